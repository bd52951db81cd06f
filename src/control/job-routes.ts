/**
 * The jobs API (/v1/jobs, admin token): lists the scheduled jobs with their last and next run,
 * changes a schedule or switches a job on or off, asks for a run now, and shows recent runs.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import type { ServiceContext } from '../service-context.js';
import { parseSchedule, ScheduleError } from '../scheduler/cron.js';
import { JobStore, type JobRow, type JobRunRow } from '../scheduler/job-store.js';
import { identifyCaller } from '../auth/caller.js';
import { ControlError } from './errors.js';
import { ErrorSchema } from './schemas.js';

const Timestamp = Type.String({ format: 'date-time' });
const MaybeTimestamp = Type.Union([Timestamp, Type.Null()]);

export const JobSchema = Type.Object({
  name: Type.String(),
  description: Type.String(),
  schedule: Type.String({ description: 'cron: 5 fields, or 6 with seconds first (UTC)' }),
  enabled: Type.Boolean(),
  next_run_at: Timestamp,
  running: Type.Boolean({ description: 'A process is running the job now' }),
  last_run_at: MaybeTimestamp,
  last_finished_at: MaybeTimestamp,
  last_outcome: Type.Union([Type.Literal('succeeded'), Type.Literal('failed'), Type.Null()]),
  last_result: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()], { description: 'What the last run did, e.g. {"reaped": 3, "failed": 0}' }),
  last_error: Type.Union([Type.String(), Type.Null()]),
});
export type JobJson = Static<typeof JobSchema>;

export const JobRunSchema = Type.Object({
  id: Type.String(),
  scheduled_for: Timestamp,
  started_at: Timestamp,
  finished_at: MaybeTimestamp,
  outcome: Type.Union([Type.Literal('running'), Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('abandoned')], {
    description: 'abandoned: the process running it stopped (crash) before it finished',
  }),
  rows_affected: Type.Union([Type.Integer(), Type.Null()]),
  result: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()], {
    description: 'What the run did. With "runs": quiet runs folded into one row (the observer\'s runs that moved no status), from started_at to finished_at; its numbers are their sums',
  }),
  error: Type.Union([Type.String(), Type.Null()]),
  worker: Type.String({ description: 'host:pid:id of the process that ran it (the last one, for folded runs)' }),
});

const JobParams = Type.Object({ name: Type.String({ description: 'Job name, e.g. reap-expired' }) });

const UpdateJobBody = Type.Object(
  {
    schedule: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'New cron schedule; the next run is planned from now' })),
    enabled: Type.Optional(Type.Boolean({ description: 'false: no process runs the job until it is enabled again' })),
  },
  { additionalProperties: false, minProperties: 1 },
);

const RunsQuery = Type.Object(
  { limit: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'How many recent runs, 1 to 500 (default 50)' })) },
  { additionalProperties: false },
);

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema };

function jobJson(job: JobRow, now: Date): JobJson {
  return {
    name: job.name,
    description: job.description,
    schedule: job.schedule,
    enabled: job.enabled,
    next_run_at: job.next_run_at.toISOString(),
    running: job.running_until !== null && job.running_until > now,
    last_run_at: job.last_run_at?.toISOString() ?? null,
    last_finished_at: job.last_finished_at?.toISOString() ?? null,
    last_outcome: job.last_outcome,
    last_result: job.last_result,
    last_error: job.last_error,
  };
}

function runJson(run: JobRunRow): Static<typeof JobRunSchema> {
  return {
    id: run.id,
    scheduled_for: run.scheduled_for.toISOString(),
    started_at: run.started_at.toISOString(),
    finished_at: run.finished_at?.toISOString() ?? null,
    outcome: run.outcome,
    rows_affected: run.rows_affected === null ? null : Number(run.rows_affected),
    result: run.result,
    error: run.error,
    worker: run.worker,
  };
}

export async function jobRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  const routes = app.withTypeProvider<TypeBoxTypeProvider>();
  const jobs = new JobStore(context.host.pool);

  function requireAdmin(request: FastifyRequest): void {
    const caller = identifyCaller(request, context.config.adminToken);
    if (caller.kind === 'anonymous') throw new ControlError('PGLEASE_UNAUTHORIZED');
    if (caller.kind !== 'admin') throw new ControlError('PGLEASE_FORBIDDEN', 'The jobs API needs the admin token (PGLEASE_ADMIN_TOKEN), and this token is not it');
  }

  function notFound(name: string): ControlError {
    return new ControlError('PGLEASE_JOB_NOT_FOUND', `No job named ${JSON.stringify(name)}; GET /v1/jobs lists them`);
  }

  routes.get(
    '/v1/jobs',
    {
      schema: {
        summary: 'List scheduled jobs (admin)',
        tags: ['jobs'],
        security: [{ bearer: [] }],
        response: { 200: Type.Object({ items: Type.Array(JobSchema) }), ...errors },
      },
    },
    async (request) => {
      requireAdmin(request);
      const [rows, now] = await Promise.all([jobs.list(), jobs.now()]);
      return { items: rows.map((job) => jobJson(job, now)) };
    },
  );

  routes.get(
    '/v1/jobs/:name',
    {
      schema: { summary: 'Get a job (admin)', tags: ['jobs'], security: [{ bearer: [] }], params: JobParams, response: { 200: JobSchema, ...errors } },
    },
    async (request) => {
      requireAdmin(request);
      const [job, now] = await Promise.all([jobs.find(request.params.name), jobs.now()]);
      if (!job) throw notFound(request.params.name);
      return jobJson(job, now);
    },
  );

  routes.patch(
    '/v1/jobs/:name',
    {
      schema: {
        summary: 'Change a job’s schedule, or enable/disable it (admin)',
        description: 'Every pglease process on the database picks the change up at once (LISTEN/NOTIFY). A schedule set here survives restarts until PGLEASE_*_CRON itself changes.',
        tags: ['jobs'],
        security: [{ bearer: [] }],
        params: JobParams,
        body: UpdateJobBody,
        response: { 200: JobSchema, ...errors },
      },
    },
    async (request) => {
      requireAdmin(request);
      let schedule: string | undefined;
      if (request.body.schedule !== undefined) {
        try {
          schedule = parseSchedule(request.body.schedule);
        } catch (error) {
          if (error instanceof ScheduleError) throw new ControlError('PGLEASE_INVALID_FIELD', error.message, 'schedule');
          throw error;
        }
      }
      const job = await jobs.update(request.params.name, { schedule, enabled: request.body.enabled });
      if (!job) throw notFound(request.params.name);
      return jobJson(job, await jobs.now());
    },
  );

  routes.post(
    '/v1/jobs/:name/run',
    {
      schema: {
        summary: 'Run a job as soon as possible (admin)',
        description: 'Moves next_run_at to now; one process claims and runs it. Answers at once with the job (202), not after the run.',
        tags: ['jobs'],
        security: [{ bearer: [] }],
        params: JobParams,
        response: { 202: JobSchema, 409: ErrorSchema, ...errors },
      },
    },
    async (request, reply) => {
      requireAdmin(request);
      const existing = await jobs.find(request.params.name);
      if (!existing) throw notFound(request.params.name);
      if (!existing.enabled) throw new ControlError('PGLEASE_JOB_DISABLED', `The job ${existing.name} is disabled; enable it first (PATCH {"enabled": true})`);
      const job = (await jobs.runSoon(request.params.name))!;
      return reply.code(202).send(jobJson(job, await jobs.now()));
    },
  );

  routes.get(
    '/v1/jobs/:name/runs',
    {
      schema: {
        summary: 'Recent runs of a job, newest first (admin)',
        tags: ['jobs'],
        security: [{ bearer: [] }],
        params: JobParams,
        querystring: RunsQuery,
        response: { 200: Type.Object({ items: Type.Array(JobRunSchema) }), ...errors },
      },
    },
    async (request) => {
      requireAdmin(request);
      const limit = request.query.limit === undefined ? 50 : Number(request.query.limit);
      if (!(limit >= 1 && limit <= 500)) throw new ControlError('PGLEASE_INVALID_PARAMETER', 'limit must be between 1 and 500', 'limit');
      if (!(await jobs.find(request.params.name))) throw notFound(request.params.name);
      return { items: (await jobs.runs(request.params.name, limit)).map(runJson) };
    },
  );
}
