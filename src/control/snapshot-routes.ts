/**
 * Snapshots of a database lease (/v1/leases/:id/snapshots) and restores from them
 * (src/leases/lease-snapshots.ts): what `lease.snapshot()` and `lease.restore()` of the test helpers
 * call. The lease's own token or the admin token.
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { ServiceContext } from '../service-context.js';
import { deleteSnapshot, listSnapshots, restoreSnapshot, SnapshotError, takeSnapshot } from '../leases/lease-snapshots.js';
import { ControlError } from './errors.js';
import { authorizedLease } from './lease-access.js';
import { ErrorSchema, LeaseParams } from './schemas.js';
import type { LeaseRow } from '../leases/lease-store.js';

const SnapshotName = Type.String({ pattern: '^[a-z0-9_]{1,20}$', description: '1 to 20 lowercase letters, digits and _ (default "snapshot")' });
const SnapshotBody = Type.Object({ name: Type.Optional(SnapshotName) }, { additionalProperties: false });
const SnapshotSchema = Type.Object({
  name: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
  size_bytes: Type.Union([Type.Integer(), Type.Null()]),
});
const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema };

function databaseLease(lease: LeaseRow): void {
  if (lease.state !== 'active') throw new ControlError('PGLEASE_LEASE_NOT_ACTIVE', `The lease is ${lease.state}`);
  if (lease.kind !== 'database') {
    throw new ControlError('PGLEASE_FORK_NEEDS_DATABASE', 'Only a database lease has snapshots (a copy is CREATE DATABASE ... TEMPLATE); create leases with "kind": "database" to use them');
  }
}

function controlError(error: unknown): unknown {
  return error instanceof SnapshotError ? new ControlError(error.code, error.message, error.code === 'PGLEASE_INVALID_FIELD' ? 'name' : undefined) : error;
}

export async function snapshotRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  const routes = app.withTypeProvider<TypeBoxTypeProvider>();
  routes.post(
    '/v1/leases/:id/snapshots',
    {
      schema: {
        summary: 'Snapshot a database lease',
        description:
          'Keeps a copy of the lease\'s database as it is now, to restore later (POST /v1/leases/:id/restore). The lease\'s open ' +
          'sessions are ended for the copy (`sessions_ended`); a snapshot of the same name is replaced. At most 4 per lease; they end with it.',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        body: SnapshotBody,
        response: { 201: Type.Composite([SnapshotSchema, Type.Object({ sessions_ended: Type.Integer() })]), ...errors },
      },
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
    },
    async (request, reply) => {
      const { lease, at } = await authorizedLease(context, request, request.params.id);
      const pool = at.leases.pool;
      databaseLease(lease);
      const { snapshot, sessionsEnded } = await takeSnapshot(pool, lease.id, request.body.name ?? 'snapshot', at.host.databaseUrl).catch((error: unknown) => Promise.reject(controlError(error)));
      reply.code(201);
      return { ...snapshot, created_at: snapshot.created_at.toISOString(), sessions_ended: sessionsEnded };
    },
  );

  routes.get(
    '/v1/leases/:id/snapshots',
    {
      schema: {
        summary: 'List a database lease\'s snapshots',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        response: { 200: Type.Object({ items: Type.Array(SnapshotSchema) }), ...errors },
      },
    },
    async (request) => {
      const { lease, at } = await authorizedLease(context, request, request.params.id);
      const pool = at.leases.pool;
      const items = await listSnapshots(pool, lease.id);
      return { items: items.map((item) => ({ ...item, created_at: item.created_at.toISOString() })) };
    },
  );

  routes.delete(
    '/v1/leases/:id/snapshots/:name',
    {
      schema: {
        summary: 'Delete a snapshot',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: Type.Object({ id: Type.String(), name: Type.String() }),
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      const { lease, at } = await authorizedLease(context, request, request.params.id);
      const pool = at.leases.pool;
      if (!(await deleteSnapshot(pool, lease.id, request.params.name))) throw new ControlError('PGLEASE_SNAPSHOT_NOT_FOUND', `The lease has no snapshot ${JSON.stringify(request.params.name)}`);
      return reply.code(204).send(null);
    },
  );

  routes.post(
    '/v1/leases/:id/restore',
    {
      schema: {
        summary: 'Restore a database lease from a snapshot',
        description:
          'Resets the lease\'s database to one of its snapshots: same URL, roles and password; its open sessions are ended ' +
          '(`sessions_ended`). The copy is made while the lease keeps working, and swapped in at once.',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        body: SnapshotBody,
        response: { 200: Type.Object({ restored_from: Type.String(), sessions_ended: Type.Integer() }), ...errors },
      },
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
    },
    async (request) => {
      const { lease, at } = await authorizedLease(context, request, request.params.id);
      const pool = at.leases.pool;
      databaseLease(lease);
      const name = request.body.name ?? 'snapshot';
      const sessionsEnded = await restoreSnapshot(pool, lease.id, name, at.host.databaseUrl).catch((error: unknown) => Promise.reject(controlError(error)));
      return { restored_from: name, sessions_ended: sessionsEnded };
    },
  );
}
