// Copyright the lbkit authors. MIT license.
import { BlockingQueue } from "../../lib/queue.ts";

/** Items passed through the queue in each bench iteration. */
const ITEMS = 100_000;

/** One producer and one consumer pass `ITEMS` items through `queue`. */
async function pipe(queue: BlockingQueue<number>): Promise<void> {
  const producer = (async () => {
    for (let i = 0; i < ITEMS; i++) await queue.put(i);
  })();
  let sum = 0;
  for (let i = 0; i < ITEMS; i++) sum += await queue.take();
  await producer;
  if (sum !== (ITEMS * (ITEMS - 1)) / 2) throw new Error(`lost items: sum ${sum}`);
}

Deno.bench({
  name: "put/take, 1 producer + 1 consumer, capacity 1024",
  group: "async put/take (100k items)",
  baseline: true,
  async fn() {
    await pipe(new BlockingQueue<number>(1024));
  },
});

Deno.bench({
  name: "put/take, 1 producer + 1 consumer, capacity 1 (always blocks)",
  group: "async put/take (100k items)",
  async fn() {
    await pipe(new BlockingQueue<number>(1));
  },
});

Deno.bench({
  name: "for await consumer, capacity 1024",
  group: "async put/take (100k items)",
  async fn() {
    const queue = new BlockingQueue<number>(1024);
    const producer = (async () => {
      for (let i = 0; i < ITEMS; i++) await queue.put(i);
      queue.close();
    })();
    let count = 0;
    for await (const _ of queue) count++;
    await producer;
    if (count !== ITEMS) throw new Error(`lost items: ${count}`);
  },
});

Deno.bench({
  name: "8 producers + 8 consumers, capacity 1024",
  group: "async put/take (100k items)",
  async fn() {
    const queue = new BlockingQueue<number>(1024);
    const per = ITEMS / 8;
    const producers = Array.from({ length: 8 }, async () => {
      for (let i = 0; i < per; i++) await queue.put(i);
    });
    let count = 0;
    const consumers = Array.from({ length: 8 }, async () => {
      for await (const _ of queue) count++;
    });
    await Promise.all(producers);
    queue.close();
    await Promise.all(consumers);
    if (count !== ITEMS) throw new Error(`lost items: ${count}`);
  },
});

const fastQueue = new BlockingQueue<number>(1024);

Deno.bench({
  name: "tryPut/tryTake pairs",
  group: "sync fast path (100k pairs)",
  baseline: true,
  fn() {
    const queue = fastQueue;
    let sum = 0;
    for (let i = 0; i < ITEMS; i++) {
      queue.tryPut(i);
      sum += queue.tryTake() as number;
    }
    if (sum !== (ITEMS * (ITEMS - 1)) / 2) throw new Error(`lost items: sum ${sum}`);
  },
});

Deno.bench({
  name: "tryPut x1024 then tryTake x1024 (full ring cycles)",
  group: "sync fast path (100k pairs)",
  fn() {
    const queue = fastQueue;
    let sum = 0;
    for (let done = 0; done < ITEMS;) {
      const batch = Math.min(1024, ITEMS - done);
      for (let i = 0; i < batch; i++) queue.tryPut(done + i);
      for (let i = 0; i < batch; i++) sum += queue.tryTake() as number;
      done += batch;
    }
    if (sum !== (ITEMS * (ITEMS - 1)) / 2) throw new Error(`lost items: sum ${sum}`);
  },
});

Deno.bench({
  name: "Array push/shift (reference, unbounded)",
  group: "sync fast path (100k pairs)",
  fn() {
    const array: number[] = [];
    let sum = 0;
    for (let i = 0; i < ITEMS; i++) {
      array.push(i);
      sum += array.shift() as number;
    }
    if (sum !== (ITEMS * (ITEMS - 1)) / 2) throw new Error(`lost items: sum ${sum}`);
  },
});
