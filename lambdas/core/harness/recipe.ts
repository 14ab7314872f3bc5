import type { Session } from '../resources/sessions.js';
import { loadRecipePlan, type RecipePlan, type RecipeSources } from '../sandbox/recipe.js';
import { HARNESS } from './step.js';

/** What a new sandbox of this session is built from (planned once, in `sandbox/recipe.ts`). */
export function sandboxRecipe(src: RecipeSources, session: Session): Promise<RecipePlan> {
  return loadRecipePlan(src, HARNESS, session);
}
