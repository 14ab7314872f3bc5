/**
 * The state table's deployment items (keys in `keys.ts`, `deploymentKeys`): a deployment's head,
 * its last scheduled run, its fire claims, and its runs. Like `items.ts`, readers that serve the
 * API take a principal and answer "absent" for another tenant's item. The scheduler's fire path
 * (`readForFire`) acts for whichever tenant owns the deployment: it is reached only by the
 * scheduler (the local one in-process; EventBridge Scheduler through the fire function), never
 * from a request, and it reads the tenant from the item it reads.
 */
import { ConditionFailedError, type Item, type Page, type QueryOptions, type StateTable } from '../store.js';
import { DEPLOYMENT_PARTITION_PREFIX, HEAD_SK, deploymentKeys } from './keys.js';
import { mayRead, type Principal } from './principal.js';

export type DeploymentItem<T> = Item & { tenant: string; data: T; gsi1pk: string; gsi1sk: string };

export class DeploymentRecords<T extends { id: string }> {
  constructor(private readonly table: StateTable) {}

  async get(who: Principal, id: string): Promise<T | undefined> {
    const k = deploymentKeys.deployment(id);
    const item = await this.table.get(k.pk, k.sk);
    return item && mayRead(who, item.tenant) ? (item as DeploymentItem<T>).data : undefined;
  }

  /** The deployment and its tenant, for the scheduler's fire path (see the module's note). */
  async readForFire(id: string): Promise<{ tenant: string; data: T } | undefined> {
    const k = deploymentKeys.deployment(id);
    const item = (await this.table.get(k.pk, k.sk)) as DeploymentItem<T> | undefined;
    return item ? { tenant: item.tenant, data: item.data } : undefined;
  }

  put(tenant: string, data: T, opts?: { ifNotExists?: boolean }): Promise<void> {
    return this.table.put(
      { ...deploymentKeys.deployment(data.id), tenant, data, gsi1pk: deploymentKeys.deploymentIndex(tenant), gsi1sk: data.id },
      opts,
    );
  }

  async page(tenant: string, q: QueryOptions): Promise<Page<DeploymentItem<T>>> {
    const page = await this.table.queryIndex(deploymentKeys.deploymentIndex(tenant), q);
    return { items: page.items.filter((i) => i.tenant === tenant) as Array<DeploymentItem<T>>, last: page.last };
  }

  /** Every deployment of every tenant, with its tenant (the local scheduler's start-up; a scan). */
  async all(): Promise<Array<{ tenant: string; data: T }>> {
    const items = await this.table.scanPrefix(DEPLOYMENT_PARTITION_PREFIX);
    return items.filter((i) => i.sk === HEAD_SK).map((i) => ({ tenant: String(i.tenant), data: (i as DeploymentItem<T>).data }));
  }

  async lastRunAt(id: string): Promise<string | null> {
    const k = deploymentKeys.lastRun(id);
    const item = await this.table.get(k.pk, k.sk);
    return typeof item?.at === 'string' ? item.at : null;
  }

  /** Record a scheduled run's start; an older one never overwrites a newer (fires may finish out of order). */
  async recordLastRun(id: string, at: string): Promise<void> {
    const k = deploymentKeys.lastRun(id);
    const ms = Date.parse(at);
    try {
      await this.table.put({ ...k, at, ms }, { ifBelow: { name: 'ms', value: ms } });
    } catch (err) {
      if (!(err instanceof ConditionFailedError)) throw err;
    }
  }

  /**
   * Claim one scheduled time of a deployment for run `runId`. Returns null when the claim is new
   * (the caller starts the run), else the run id of the earlier claim: exactly one caller wins.
   */
  async claim(deploymentId: string, scheduledAt: string | null, runId: string): Promise<string | null> {
    const k = scheduledAt === null ? deploymentKeys.manualClaim(deploymentId, runId) : deploymentKeys.fireClaim(deploymentId, scheduledAt);
    try {
      await this.table.put({ ...k, run_id: runId }, { ifNotExists: true });
      return null;
    } catch (err) {
      if (!(err instanceof ConditionFailedError)) throw err;
      const existing = await this.table.get(k.pk, k.sk);
      return String(existing?.run_id ?? '');
    }
  }
}

export class DeploymentRunRecords<R extends { id: string }> {
  constructor(private readonly table: StateTable) {}

  async get(who: Principal, id: string): Promise<R | undefined> {
    const k = deploymentKeys.run(id);
    const item = await this.table.get(k.pk, k.sk);
    return item && mayRead(who, item.tenant) ? (item as DeploymentItem<R>).data : undefined;
  }

  put(tenant: string, run: R): Promise<void> {
    return this.table.put({ ...deploymentKeys.run(run.id), tenant, data: run, gsi1pk: deploymentKeys.runIndex(tenant), gsi1sk: run.id });
  }

  async page(tenant: string, q: QueryOptions): Promise<Page<DeploymentItem<R>>> {
    const page = await this.table.queryIndex(deploymentKeys.runIndex(tenant), q);
    return { items: page.items.filter((i) => i.tenant === tenant) as Array<DeploymentItem<R>>, last: page.last };
  }
}
