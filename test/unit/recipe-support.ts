import { PACKAGE_MANAGERS, type RecipeSupport } from '../../lambdas/core/sandbox/recipe.js';

/** A stand-in provider's answer to "what can you deliver": all of it (nothing is fitted away). */
export const DELIVERS_EVERYTHING: RecipeSupport = {
  label: 'a test sandbox',
  packages: { managers: PACKAGE_MANAGERS, otherwise: '' },
  publicRepositories: { supported: true },
  credentialedRepositories: { supported: true },
};
