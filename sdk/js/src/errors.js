// @ts-check

/**
 * The one error of the SDK. Every non-2xx answer of the engine becomes a
 * CpodError carrying the HTTP status, the contract's error code
 * (`not_found`, `invalid_scope`, `not_integer`, ...), the engine's message
 * and the request id the engine logged it under. A call the SDK refuses
 * before sending anything (an empty key, say) is a CpodError with status 0
 * and code `invalid_request`.
 *
 * Failures that never reach the engine (no network, DNS, an aborted
 * signal) are the platform's own errors from fetch, not CpodErrors.
 */
export class CpodError extends Error {
  /**
   * @param {{status: number, code: string, message: string, requestId?: string | null, retryAfter?: number | null}} init
   */
  constructor({ status, code, message, requestId = null, retryAfter = null }) {
    super(formatMessage(status, code, message));
    this.name = 'CpodError';
    /** HTTP status; 0 when the SDK refused the call before sending it. */
    this.status = status;
    /** Contract error code; '' when the answer carried none (a proxy's 502 page). */
    this.code = code;
    /** The explanation meant for a person, as the engine sent it. */
    this.detail = message;
    /** X-Request-Id of the answer, to find the call in the engine's log. */
    this.requestId = requestId;
    /** Seconds to wait before retrying, from Retry-After (sent with 503). */
    this.retryAfter = retryAfter;
  }
}

/**
 * @param {number} status
 * @param {string} code
 * @param {string} message
 */
function formatMessage(status, code, message) {
  let s = 'cpod storage: ';
  if (status) s += status + ' ';
  s += code || 'error';
  if (message) s += ': ' + message;
  return s;
}

/**
 * localError is the error for a call refused before it is sent.
 * @param {string} message
 */
export function localError(message) {
  return new CpodError({ status: 0, code: 'invalid_request', message });
}

/** Codes of bodyless error answers (HEAD), by status. */
const statusCodes = /** @type {Record<number, string>} */ ({
  400: 'invalid_request',
  401: 'invalid_token',
  404: 'not_found',
  409: 'conflict',
  413: 'too_large',
  500: 'internal',
  503: 'backend_unavailable',
});

/**
 * errorFromResponse builds the CpodError of a non-2xx response and consumes
 * its body: the contract body {"error","message"} when there is one, else
 * the RFC 6750 WWW-Authenticate error, else (HEAD answers have no body) a
 * code guessed from the status.
 * @param {Response} res
 * @param {string} method
 * @returns {Promise<CpodError>}
 */
export async function errorFromResponse(res, method) {
  let text = '';
  if (method !== 'HEAD') {
    try {
      text = await res.text();
    } catch {
      // The body broke off; status and headers still say enough.
    }
  }
  const requestId = res.headers.get('X-Request-Id');
  const retryAfter = parseRetryAfter(res.headers.get('Retry-After'));
  let code = '';
  let message = '';
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === 'string' && body.error !== '') {
      code = body.error;
      message = typeof body.message === 'string' ? body.message : '';
    }
  } catch {
    // Not JSON: a proxy's page, or no body at all.
  }
  if (code === '') {
    code = bearerError(res.headers.get('WWW-Authenticate')) || (method === 'HEAD' ? statusCodes[res.status] || '' : '');
    message = text.trim().slice(0, 512);
  }
  return new CpodError({ status: res.status, code, message, requestId, retryAfter });
}

/**
 * @param {string | null} h
 * @returns {number | null} seconds
 */
function parseRetryAfter(h) {
  if (h == null || h === '') return null;
  if (/^\d+$/.test(h.trim())) return Number(h.trim());
  const t = Date.parse(h);
  if (Number.isNaN(t)) return null;
  return Math.max(0, Math.ceil((t - Date.now()) / 1000));
}

/**
 * bearerError returns the error parameter of a Bearer challenge, '' when
 * there is none.
 * @param {string | null} h
 */
function bearerError(h) {
  if (!h || !/^\s*bearer\b/i.test(h)) return '';
  const m = /error="([^"]*)"/.exec(h);
  return m ? m[1] : '';
}
