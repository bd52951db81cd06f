/**
 * Cron schedules of jobs: 5 fields (minute first) or 6 (seconds first), or an alias such as
 * @hourly. cron-parser computes the times; this module decides what it accepts.
 */
import { CronExpressionParser } from 'cron-parser';

export class ScheduleError extends Error {
  constructor(schedule: string, problem: string) {
    super(`invalid cron schedule ${JSON.stringify(schedule)}: ${problem}`);
    this.name = 'ScheduleError';
  }
}

/** Checks a schedule; returns it trimmed. cron-parser alone accepts 3 or 4 fields, which a reader would take for a typo. */
export function parseSchedule(schedule: string): string {
  const trimmed = schedule.trim();
  const fields = trimmed.split(/\s+/);
  if (!trimmed.startsWith('@') && fields.length !== 5 && fields.length !== 6) {
    throw new ScheduleError(schedule, `expected 5 fields (minute hour day month weekday) or 6 (with seconds first), got ${fields.length}`);
  }
  try {
    CronExpressionParser.parse(trimmed, { tz: 'UTC' });
  } catch (error) {
    throw new ScheduleError(schedule, (error as Error).message);
  }
  return trimmed;
}

/** The first time strictly after `after` that the schedule fires (UTC). */
export function nextRun(schedule: string, after: Date): Date {
  return CronExpressionParser.parse(schedule, { tz: 'UTC', currentDate: after }).next().toDate();
}
