/**
 * The seed's LB state machines (seed 003), as explicit states with the
 * transitions each allows. Every transition is logged by its owner.
 *
 * @module
 */

/** Master states: `lb_master_state`. */
export type MasterState = "UP_LISTENING" | "DOWN";

/** Slave states: `lb_slave_state`. */
export type SlaveState = "CONNECTED" | "PUSH_LOAD_INFO" | "DOWN";

const SLAVE_NEXT: Record<SlaveState, readonly SlaveState[]> = {
  // Connected: heart-beating, no load pushed yet (not a NODE candidate).
  CONNECTED: ["PUSH_LOAD_INFO", "DOWN"],
  // Pushing load: a candidate while its pushes are fresh.
  PUSH_LOAD_INFO: ["PUSH_LOAD_INFO", "DOWN"],
  // Down: a new connection starts over.
  DOWN: ["CONNECTED"],
};

const MASTER_NEXT: Record<MasterState, readonly MasterState[]> = {
  UP_LISTENING: ["DOWN"],
  DOWN: ["UP_LISTENING"],
};

/** A state with its allowed transitions and a change log. */
export class StateMachine<S extends string> {
  #state: S;
  #next: Record<S, readonly S[]>;
  #onChange: (from: S, to: S) => void;

  constructor(initial: S, next: Record<S, readonly S[]>, onChange: (from: S, to: S) => void) {
    this.#state = initial;
    this.#next = next;
    this.#onChange = onChange;
  }

  /** The current state. */
  get state(): S {
    return this.#state;
  }

  /** Moves to `to`; throws `RangeError` for a transition the machine forbids. */
  to(to: S): void {
    const from = this.#state;
    if (!this.#next[from].includes(to)) {
      throw new RangeError(`illegal transition ${from} -> ${to}`);
    }
    this.#state = to;
    if (from !== to) this.#onChange(from, to);
  }
}

/** A slave's state machine (as the master sees it, or as the slave itself). */
export function slaveMachine(
  onChange: (from: SlaveState, to: SlaveState) => void,
  initial: SlaveState = "CONNECTED",
): StateMachine<SlaveState> {
  return new StateMachine<SlaveState>(initial, SLAVE_NEXT, onChange);
}

/** The master's state machine. */
export function masterMachine(
  onChange: (from: MasterState, to: MasterState) => void,
  initial: MasterState = "DOWN",
): StateMachine<MasterState> {
  return new StateMachine<MasterState>(initial, MASTER_NEXT, onChange);
}
