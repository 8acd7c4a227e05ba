/**
 * A circular doubly linked list with a round-robin pointer: the seed design's
 * structure for Workers, so a load balancer can hand out Workers in turn and
 * add or remove them in O(1) while it does.
 *
 * @module
 */

/** One cell of the ring. Never exposed outside this module. */
class Node<T> {
  /**
   * Successor. For a live node, its successor in the ring. For a removed
   * node, frozen at removal time (its live successor then), so an iterator
   * standing on it can still move forward; a removed node whose `next` is
   * itself is a dead end (it was the last member, or the ring was cleared).
   */
  next: Node<T> = this;
  /** Predecessor; meaningful only while the node is live. */
  prev: Node<T> = this;
  /** Set once, when the node leaves the ring. A removed node never rejoins it. */
  removed = false;

  constructor(readonly item: T) {}
}

/**
 * Follows `next` from `node` to the first live node, or `undefined` when the
 * chain ends in a dead end (every node on it has been removed).
 */
function live<T>(node: Node<T>): Node<T> | undefined {
  while (node.removed) {
    if (node.next === node) return undefined;
    node = node.next;
  }
  return node;
}

/**
 * A set of distinct members kept in a circle, handed out in turn by
 * {@linkcode Ring.prototype.next}.
 *
 * Semantics:
 *
 * - **Pointer.** The ring has a round-robin pointer on one member (none when
 *   empty). `next()` returns the member under the pointer and moves the
 *   pointer to its successor.
 * - **`add` inserts just before the pointer**, i.e. at the tail of the current
 *   rotation: the new member is returned by `next()` only after every member
 *   already in the ring has had its turn. The pointer does not move, except
 *   that the first member of an empty ring becomes the pointer. Joining
 *   members therefore never jump the queue.
 * - **`remove` of the member under the pointer moves the pointer to that
 *   member's successor**, the member `next()` would have returned right after
 *   it; removing any other member leaves the pointer where it is. Either way
 *   no live member loses its turn and a removed member is never returned.
 * - **Fairness.** While membership does not change, any `size` consecutive
 *   `next()` calls return each member exactly once.
 * - **Iteration** yields the members in ring order starting at the pointer,
 *   without moving it. The ring may be changed during iteration: a removed
 *   node keeps its `next` link (frozen at removal), so an iterator standing on
 *   a member that was just removed (e.g. `for (const w of ring) ring.remove(w)`)
 *   continues with the following live member. Members that stay in the ring
 *   for the whole iteration are yielded exactly once, a member is never
 *   yielded after its removal, and members added during iteration may or may
 *   not be yielded (a member removed and added back counts as added). The
 *   iterator keeps a set of the nodes it has yielded, so it costs O(n) memory
 *   while it runs.
 *
 * Membership is by `SameValueZero`, as in `Map`. `add`, `remove`, `has` and
 * `next` are O(1); `clear` is O(n).
 *
 * @typeParam T The member type.
 *
 * @example Round robin with a member leaving and one joining
 * ```ts
 * import assert from "node:assert/strict";
 * import { Ring } from "./ring.ts";
 *
 * const ring = new Ring<string>(["a", "b", "c"]);
 * assert.equal(ring.next(), "a"); // the pointer is now on "b"
 * ring.remove("b"); // it was under the pointer, which moves on to "c"
 * assert.equal(ring.next(), "c");
 * ring.add("d"); // just before the pointer ("a"): last in this rotation
 * assert.deepEqual([...ring], ["a", "c", "d"]);
 * assert.deepEqual([ring.next(), ring.next(), ring.next()], ["a", "c", "d"]);
 * ```
 *
 * @example Removing members while iterating
 * ```ts
 * import assert from "node:assert/strict";
 * import { Ring } from "./ring.ts";
 *
 * const ring = new Ring([1, 2, 3, 4]);
 * const seen: number[] = [];
 * for (const n of ring) {
 *   seen.push(n);
 *   ring.remove(n);
 * }
 * assert.deepEqual(seen, [1, 2, 3, 4]);
 * assert.equal(ring.size, 0);
 * ```
 */
export class Ring<T> implements Iterable<T> {
  /** Member to node, for O(1) `has` and `remove`. */
  #nodes: Map<T, Node<T>> = new Map();
  /** The node `next()` returns next; `undefined` exactly when empty. */
  #pointer: Node<T> | undefined = undefined;

  /**
   * Makes a ring holding `items` (duplicates skipped), in order, with the
   * pointer on the first of them.
   *
   * @param items Initial members.
   *
   * @example Usage
   * ```ts
   * import assert from "node:assert/strict";
   * import { Ring } from "./ring.ts";
   *
   * const ring = new Ring(["x", "y", "x"]);
   * assert.deepEqual([...ring], ["x", "y"]);
   * ```
   */
  constructor(items?: Iterable<T>) {
    if (items !== undefined) {
      for (const item of items) this.add(item);
    }
  }

  /**
   * The number of members.
   *
   * @returns The number of members.
   *
   * @example Usage
   * ```ts
   * import assert from "node:assert/strict";
   * import { Ring } from "./ring.ts";
   *
   * assert.equal(new Ring([1, 2]).size, 2);
   * ```
   */
  get size(): number {
    return this.#nodes.size;
  }

  /**
   * Whether `item` is a member.
   *
   * @param item The value to look up.
   * @returns `true` if `item` is in the ring.
   *
   * @example Usage
   * ```ts
   * import assert from "node:assert/strict";
   * import { Ring } from "./ring.ts";
   *
   * const ring = new Ring([1]);
   * assert.equal(ring.has(1), true);
   * assert.equal(ring.has(2), false);
   * ```
   */
  has(item: T): boolean {
    return this.#nodes.has(item);
  }

  /**
   * Adds `item` just before the pointer, so it is the last member the current
   * rotation visits. The pointer does not move (an empty ring's first member
   * becomes the pointer). O(1).
   *
   * @param item The member to add.
   * @returns `false` (and changes nothing) if `item` is already a member.
   *
   * @example Usage
   * ```ts
   * import assert from "node:assert/strict";
   * import { Ring } from "./ring.ts";
   *
   * const ring = new Ring(["a", "b"]);
   * ring.next(); // "a"; the pointer is now on "b"
   * assert.equal(ring.add("c"), true); // goes between "a" and "b"
   * assert.equal(ring.add("c"), false);
   * assert.deepEqual([ring.next(), ring.next(), ring.next()], ["b", "a", "c"]);
   * ```
   */
  add(item: T): boolean {
    if (this.#nodes.has(item)) return false;
    const pointer = this.#pointer;
    const node = new Node(item);
    if (pointer === undefined) {
      this.#pointer = node;
    } else {
      node.next = pointer;
      node.prev = pointer.prev;
      pointer.prev.next = node;
      pointer.prev = node;
    }
    this.#nodes.set(item, node);
    return true;
  }

  /**
   * Removes `item`. If it is under the pointer, the pointer moves to its
   * successor; otherwise the pointer stays put. O(1).
   *
   * The removed node keeps its `next` link so that an iterator standing on it
   * can continue with the following live member.
   *
   * @param item The member to remove.
   * @returns `false` (and changes nothing) if `item` is not a member.
   *
   * @example Usage
   * ```ts
   * import assert from "node:assert/strict";
   * import { Ring } from "./ring.ts";
   *
   * const ring = new Ring(["a", "b", "c"]);
   * assert.equal(ring.remove("a"), true); // was under the pointer: it moves to "b"
   * assert.equal(ring.remove("a"), false);
   * assert.equal(ring.next(), "b");
   * ```
   */
  remove(item: T): boolean {
    const node = this.#nodes.get(item);
    if (node === undefined) return false;
    this.#nodes.delete(item);
    node.removed = true;
    // For the only member both links are the node itself, so this leaves it
    // a self-looped dead end, which is what iterators expect.
    node.prev.next = node.next;
    node.next.prev = node.prev;
    if (this.#pointer === node) {
      this.#pointer = this.#nodes.size === 0 ? undefined : node.next;
    }
    // `node.next` is deliberately left alone (see the class docs).
    node.prev = node;
    return true;
  }

  /**
   * Returns the member under the pointer and moves the pointer to its
   * successor. O(1).
   *
   * @returns The next member in round-robin order, or `undefined` if the ring
   * is empty.
   *
   * @example Usage
   * ```ts
   * import assert from "node:assert/strict";
   * import { Ring } from "./ring.ts";
   *
   * const ring = new Ring([1, 2]);
   * assert.deepEqual([ring.next(), ring.next(), ring.next()], [1, 2, 1]);
   * assert.equal(new Ring<number>().next(), undefined);
   * ```
   */
  next(): T | undefined {
    const node = this.#pointer;
    if (node === undefined) return undefined;
    this.#pointer = node.next;
    return node.item;
  }

  /**
   * Removes every member. O(n): each node is turned into a dead end so that
   * live iterators stop.
   *
   * @example Usage
   * ```ts
   * import assert from "node:assert/strict";
   * import { Ring } from "./ring.ts";
   *
   * const ring = new Ring([1, 2]);
   * ring.clear();
   * assert.equal(ring.size, 0);
   * assert.equal(ring.next(), undefined);
   * ```
   */
  clear(): void {
    for (const node of this.#nodes.values()) {
      node.removed = true;
      node.next = node;
      node.prev = node;
    }
    this.#nodes.clear();
    this.#pointer = undefined;
  }

  /**
   * Iterates over the members in ring order, starting at the pointer, without
   * moving it. The starting point is fixed when this method is called. Safe
   * under concurrent changes; see the class docs for the guarantees.
   *
   * @returns An iterator over the members.
   *
   * @example Usage
   * ```ts
   * import assert from "node:assert/strict";
   * import { Ring } from "./ring.ts";
   *
   * const ring = new Ring(["a", "b", "c"]);
   * ring.next();
   * assert.deepEqual([...ring], ["b", "c", "a"]);
   * assert.equal(ring.next(), "b");
   * ```
   */
  [Symbol.iterator](): IterableIterator<T> {
    return this.#walk(this.#pointer);
  }

  /**
   * Yields live nodes from `start` on, following `next`, until the next live
   * node is one already yielded (the walk has come round) or there is none.
   *
   * The visited set (O(n) memory while iterating) is what makes removal
   * during iteration safe: a removed node's frozen `next` keeps the walk
   * moving forward in ring order, and because the nodes that stay in the ring
   * keep their cyclic order, the first already-yielded node the walk meets is
   * met only after every node still unvisited. Comparing against `start`
   * alone would not do: once `start` is removed, its first live successor may
   * be a node the walk has not reached yet.
   */
  *#walk(start: Node<T> | undefined): Generator<T, void, undefined> {
    if (start === undefined) return;
    const visited = new Set<Node<T>>();
    let current = live(start);
    while (current !== undefined && !visited.has(current)) {
      visited.add(current);
      yield current.item;
      current = live(current.next);
    }
  }
}
