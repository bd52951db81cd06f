/**
 * Cross-origin access, as permissive as PostgREST's (any origin; preflights cached for a day), so
 * that a web page can create a lease and use its REST API straight from the browser. Applies to the
 * whole service: control API, REST API and documents alike.
 */
import type { FastifyInstance } from 'fastify';

const ALLOWED_METHODS = 'GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD';
// what a browser script may read from our responses (PostgREST exposes the same list)
const EXPOSED_HEADERS = 'Content-Encoding, Content-Location, Content-Range, Content-Type, Date, Location, Server, Transfer-Encoding, Range-Unit';
const ALWAYS_ALLOWED_REQUEST_HEADERS = ['Accept', 'Accept-Language', 'Content-Language'];

/** `Authorization`, then the headers the browser asks for, then the CORS-safelisted ones. */
function allowedRequestHeaders(requested: string | undefined): string {
  const names = ['Authorization'];
  for (const name of (requested ?? '').split(',').map((part) => part.trim()).filter(Boolean)) {
    if (!names.some((known) => known.toLowerCase() === name.toLowerCase())) names.push(name);
  }
  for (const name of ALWAYS_ALLOWED_REQUEST_HEADERS) {
    if (!names.some((known) => known.toLowerCase() === name.toLowerCase())) names.push(name);
  }
  return names.join(', ');
}

export function registerCors(app: FastifyInstance): void {
  // a callback hook, not an async one: it runs on every request, and a promise per request costs
  app.addHook('onRequest', (request, reply, done) => {
    if (request.headers.origin === undefined) return done();
    const preflightMethod = request.headers['access-control-request-method'];
    if (request.method === 'OPTIONS' && preflightMethod !== undefined) {
      const requestedHeaders = request.headers['access-control-request-headers'];
      // answered here: the lifecycle does not go on (done is not called)
      reply
        .code(200)
        .headers({
          'access-control-allow-origin': '*',
          'access-control-allow-methods': ALLOWED_METHODS,
          'access-control-allow-headers': allowedRequestHeaders(Array.isArray(requestedHeaders) ? requestedHeaders.join(',') : requestedHeaders),
          'access-control-max-age': '86400',
        })
        .send();
      return;
    }
    reply.header('access-control-allow-origin', '*');
    reply.header('access-control-expose-headers', EXPOSED_HEADERS);
    done();
  });
}
