import { deepEqual, equal, throws } from "node:assert/strict";
import { masterMachine, slaveMachine } from "./tier_state.ts";

Deno.test("state machines", async (t) => {
  await t.step("slave: CONNECTED -> PUSH_LOAD_INFO -> DOWN -> CONNECTED, logged", () => {
    const log: string[] = [];
    const sm = slaveMachine((from, to) => log.push(`${from}>${to}`));
    equal(sm.state, "CONNECTED");
    sm.to("PUSH_LOAD_INFO");
    sm.to("PUSH_LOAD_INFO"); // each push stays, not logged again
    sm.to("DOWN");
    sm.to("CONNECTED");
    deepEqual(log, ["CONNECTED>PUSH_LOAD_INFO", "PUSH_LOAD_INFO>DOWN", "DOWN>CONNECTED"]);
  });
  await t.step("slave: illegal transitions throw RangeError", () => {
    const sm = slaveMachine(() => {});
    throws(() => sm.to("CONNECTED"), RangeError);
    sm.to("DOWN");
    throws(() => sm.to("PUSH_LOAD_INFO"), RangeError);
    equal(sm.state, "DOWN");
  });
  await t.step("master: DOWN <-> UP_LISTENING only", () => {
    const log: string[] = [];
    const sm = masterMachine((from, to) => log.push(`${from}>${to}`));
    equal(sm.state, "DOWN");
    throws(() => sm.to("DOWN"), RangeError);
    sm.to("UP_LISTENING");
    throws(() => sm.to("UP_LISTENING"), RangeError);
    sm.to("DOWN");
    deepEqual(log, ["DOWN>UP_LISTENING", "UP_LISTENING>DOWN"]);
  });
});
