/**
 * ECS task state change events (EventBridge, `source: aws.ecs`, `detail-type: ECS Task State
 * Change`) turned into the sandbox task state record the Fargate provider waits on
 * (`taskStateRecords`, core/storage/items.ts). The stack's rule delivers the events of the sandbox
 * cluster only to the sandbox reaper function, which records them here; a harness starting a
 * task then reads one small item a second instead of calling DescribeTasks (an ECS API limited to
 * 20 calls a second per account), and sees a task stop as soon as ECS says so.
 *
 * The event's `detail` is the task as DescribeTasks describes it, plus `version`, which ECS raises
 * with every change: the record is written only if its version is newer than the stored one, so
 * events that arrive out of order or twice (EventBridge delivers at least once) change nothing.
 */
import type { Task } from '@aws-sdk/client-ecs';
import type { StateTable } from '../../core/store.js';
import { taskStateRecords, type TaskStateFields } from '../../core/storage/items.js';
import { shortTaskId, taskPrivateIp, type TaskStateSource } from './ecs-sandbox-provider.js';

export const TASK_STATE_CHANGE = 'ECS Task State Change';

/** The envelope EventBridge invokes a target with (the fields read here). */
export interface TaskStateChangeEvent {
  'detail-type': string;
  source: string;
  detail: Task & { version?: number };
}

/** Whether `event` is an ECS task state change (rather than, say, the reaper's schedule). */
export function isTaskStateChange(event: unknown): event is TaskStateChangeEvent {
  const e = event as Partial<TaskStateChangeEvent> | null;
  return !!e && typeof e === 'object' && e.source === 'aws.ecs' && e['detail-type'] === TASK_STATE_CHANGE && !!e.detail && typeof e.detail === 'object';
}

/**
 * The record of the task an event describes; throws on an event without a task ARN, a status or
 * a version (ECS always sends them), so a malformed event fails loudly instead of being recorded.
 */
export function taskStateOf(detail: TaskStateChangeEvent['detail'], containerName?: string): TaskStateFields {
  const taskArn = detail.taskArn;
  if (typeof taskArn !== 'string' || !/^arn:[^:]+:ecs:[^:]*:\d*:task\/\S+$/.test(taskArn)) throw new Error('task state change: no task ARN');
  if (typeof detail.lastStatus !== 'string' || !detail.lastStatus) throw new Error(`task state change of ${shortTaskId(taskArn)}: no lastStatus`);
  const version = Number(detail.version);
  if (!Number.isInteger(version) || version < 0) throw new Error(`task state change of ${shortTaskId(taskArn)}: no version`);
  const container = detail.containers?.find((c) => c.name === containerName) ?? detail.containers?.[0];
  const state: TaskStateFields = { taskArn, version, lastStatus: detail.lastStatus };
  if (detail.desiredStatus) state.desiredStatus = detail.desiredStatus;
  const ip = taskPrivateIp(detail);
  if (ip) state.privateIp = ip;
  if (detail.stoppedReason) state.stoppedReason = String(detail.stoppedReason).slice(0, 1024);
  if (detail.stopCode) state.stopCode = String(detail.stopCode);
  if (typeof container?.exitCode === 'number') state.exitCode = container.exitCode;
  if (container?.reason) state.containerReason = String(container.reason).slice(0, 1024);
  const updated = (detail as { updatedAt?: unknown }).updatedAt;
  if (typeof updated === 'string') state.updatedAt = updated;
  return state;
}

/** Records the event's task state; false if a newer one was there already. */
export async function recordTaskStateChange(table: StateTable, event: TaskStateChangeEvent, containerName?: string): Promise<boolean> {
  const state = taskStateOf(event.detail, containerName);
  return taskStateRecords.put(table, shortTaskId(state.taskArn), state);
}

/** The recorded state as the subset of a DescribeTasks `Task` the provider reads. */
export function taskFromState(state: TaskStateFields, containerName: string): Task {
  return {
    taskArn: state.taskArn,
    lastStatus: state.lastStatus,
    desiredStatus: state.desiredStatus,
    stoppedReason: state.stoppedReason,
    stopCode: state.stopCode as Task['stopCode'],
    attachments: state.privateIp ? [{ type: 'ElasticNetworkInterface', details: [{ name: 'privateIPv4Address', value: state.privateIp }] }] : [],
    containers: [{ name: containerName, exitCode: state.exitCode, reason: state.containerReason }],
  };
}

/** The provider's view of the state table's task state records. */
export function taskStateSource(table: StateTable, containerName: string): TaskStateSource {
  return {
    async get(taskArn) {
      const state = await taskStateRecords.get(table, shortTaskId(taskArn));
      return state && state.taskArn === taskArn ? taskFromState(state, containerName) : undefined;
    },
  };
}
