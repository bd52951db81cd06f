/**
 * The parts of an OpenAPI 3.1 document the lease document generator writes. Schemas are JSON
 * Schema 2020-12 (OpenAPI 3.1's dialect): nullability is `type: [..., 'null']`, not `nullable`.
 */

export type JsonType = 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array' | 'null';

export interface Reference {
  $ref: string;
}

export interface JsonSchema {
  type?: JsonType | JsonType[];
  format?: string;
  title?: string;
  description?: string;
  enum?: (string | number | boolean | null)[];
  default?: unknown;
  items?: Schema;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  oneOf?: Schema[];
  anyOf?: Schema[];
  maxLength?: number;
  minimum?: number;
  pattern?: string;
  readOnly?: boolean;
  examples?: unknown[];
  /**
   * On a relation's row schema: what the relation is (`table`, `view`, `materialized_view`,
   * `foreign_table`, `partitioned_table`), which the operations alone do not tell (a view Postgres
   * can write through has the same ones as a table). The studio lists views apart by it.
   */
  'x-pglease-kind'?: string;
}

export type Schema = JsonSchema | Reference;

export interface Example {
  summary?: string;
  value: unknown;
}

export interface Parameter {
  name: string;
  in: 'query' | 'header' | 'path';
  description?: string;
  required?: boolean;
  schema: Schema;
  example?: unknown;
  examples?: Record<string, Example>;
}

export interface MediaTypeObject {
  schema: Schema;
  example?: unknown;
}

export interface Header {
  description?: string;
  schema: Schema;
}

export interface Response {
  description: string;
  headers?: Record<string, Header | Reference>;
  content?: Record<string, MediaTypeObject>;
}

export interface RequestBody {
  description?: string;
  required?: boolean;
  content: Record<string, MediaTypeObject>;
}

export interface Operation {
  operationId: string;
  summary?: string;
  description?: string;
  tags?: string[];
  parameters?: (Parameter | Reference)[];
  requestBody?: RequestBody | Reference;
  responses: Record<string, Response | Reference>;
}

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

export type PathItem = Partial<Record<HttpMethod, Operation>> & { summary?: string; description?: string };

export interface SecurityScheme {
  type: 'http' | 'apiKey';
  scheme?: string;
  bearerFormat?: string;
  name?: string;
  in?: 'header' | 'query';
  description?: string;
}

export interface Tag {
  name: string;
  description?: string;
}

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description?: string };
  servers: { url: string; description?: string }[];
  security: Record<string, string[]>[];
  tags: Tag[];
  paths: Record<string, PathItem>;
  components: {
    schemas: Record<string, Schema>;
    parameters: Record<string, Parameter>;
    headers: Record<string, Header>;
    responses: Record<string, Response>;
    securitySchemes: Record<string, SecurityScheme>;
  };
}
