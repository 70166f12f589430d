// Every scenario the one guest boot runs, in order (see scenario.ts).
import type { GuestScenario } from './scenario.js';
import { smokeScenario } from './smoke-scenario.js';
import { ipvsScenarios } from './ipvs-scenario.js';
import { choiceScenario } from './choice-scenario.js';

export const guestScenarios: readonly GuestScenario<any>[] = [smokeScenario, ...ipvsScenarios, choiceScenario];
