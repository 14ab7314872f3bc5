import { describe, expect, it } from 'vitest';
import { fireDeployment, parseFireEvent } from '../../lambdas/deployment-fire/handler.js';

describe('deployment fire event', () => {
  it('passes the deployment and its scheduled time to the fire path', async () => {
    const calls: Array<[string, string]> = [];
    const services = { deployments: { fire: async (id: string, at: string) => (calls.push([id, at]), null) } } as never;
    expect(await fireDeployment(services, { deployment_id: 'depl_1', scheduled_at: '2026-03-01T09:00:00Z' })).toMatchObject({ started: false, run_id: null });
    expect(calls).toEqual([['depl_1', '2026-03-01T09:00:00Z']]);
  });

  it.each([
    [null],
    ['depl_1'],
    [{ deployment_id: '../x', scheduled_at: '2026-03-01T09:00:00Z' }],
    [{ deployment_id: 'depl_1', scheduled_at: '<aws.scheduler.scheduled-time>' }],
    [{ deployment_id: 'depl_1' }],
  ])('refuses %j', (event) => {
    expect(() => parseFireEvent(event)).toThrow(/deployment fire/);
  });
});
