import type { GuestScenario } from './scenario.js';
export const ipvsScenarios: GuestScenario[] = [];
