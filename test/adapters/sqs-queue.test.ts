import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { parseWakeMessage, SqsWakeQueue } from '../../lambdas/adapters/aws/sqs-queue.js';

const sqs = mockClient(SQSClient);

describe('SqsWakeQueue', () => {
  beforeEach(() => sqs.reset());

  it('sends a FIFO message grouped by session with a fresh deduplication id each time', async () => {
    // Prepare
    sqs.on(SendMessageCommand).resolves({ MessageId: 'm' });
    const queue = new SqsWakeQueue(new SQSClient({ region: 'us-east-1' }), 'https://sqs.example/q.fifo');
    // Act
    await queue.wake('sesn_1');
    await queue.wake('sesn_1');
    // Assess
    const calls = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input);
    expect(calls).toHaveLength(2);
    for (const input of calls) {
      expect(input.QueueUrl).toBe('https://sqs.example/q.fifo');
      expect(input.MessageGroupId).toBe('sesn_1');
      expect(parseWakeMessage(input.MessageBody!)).toEqual({ sessionId: 'sesn_1' });
    }
    expect(calls[0].MessageDeduplicationId).not.toBe(calls[1].MessageDeduplicationId);
  });

  it('rejects malformed wake messages', () => {
    expect(parseWakeMessage('nope')).toBeNull();
    expect(parseWakeMessage('{"sessionId":""}')).toBeNull();
    expect(parseWakeMessage('{"other":1}')).toBeNull();
  });
});
