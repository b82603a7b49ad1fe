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
    /** Seconds to wait before retrying, from Retry-After (sent with 503 and 429). */
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

/**
 * Codes of bodyless error answers (HEAD) without Cpod-Error, by status. A
 * 404 is not guessed: it may be any server's (a proxy, a wrong baseUrl), and
 * only not_found reads as missing.
 */
const statusCodes = /** @type {Record<number, string>} */ ({
  400: 'invalid_request',
  401: 'invalid_token',
  409: 'conflict',
  413: 'too_large',
  429: 'rate_limited',
  500: 'internal',
  503: 'backend_unavailable',
});

/**
 * errorFromResponse builds the CpodError of a non-2xx response and consumes
 * its body: the contract body {"error","message"} when there is one, else
 * (HEAD answers have no body) the engine's Cpod-Error header, else the RFC
 * 6750 WWW-Authenticate error, else a code guessed from the status. A 404
 * that is not not_found (unknown_endpoint: a wrong baseUrl; or another
 * server's 404) names the URL called in its message.
 * @param {Response} res
 * @param {string} method
 * @param {string} [url] the URL called (default: the response's)
 * @returns {Promise<CpodError>}
 */
export async function errorFromResponse(res, method, url = res.url) {
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
    const head = method === 'HEAD';
    code = (head && res.headers.get('Cpod-Error')) || bearerError(res.headers.get('WWW-Authenticate')) ||
      (head ? statusCodes[res.status] || '' : '');
    message = text.trim().slice(0, 512);
  }
  if (res.status === 404 && code !== 'not_found') {
    // No such endpoint, not a missing value: the baseUrl is the usual mistake.
    let called = `${method} ${withoutQuery(url)}: `;
    if (code === 'unknown_endpoint' && message) {
      called += message; // the engine's, which names the base URL
    } else {
      called += "no such endpoint: is the client's baseUrl right? (it ends before /v1)";
      if (message) called += ': ' + message;
    }
    message = called;
  }
  return new CpodError({ status: res.status, code, message, requestId, retryAfter });
}

/**
 * withoutQuery is url without its query and fragment, which may carry a
 * signature, nor user info.
 * @param {string} url
 */
function withoutQuery(url) {
  try {
    const u = new URL(url);
    u.search = '';
    u.hash = '';
    u.username = '';
    u.password = '';
    return u.href;
  } catch {
    return String(url).split(/[?#]/)[0];
  }
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
