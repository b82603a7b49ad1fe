package client

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error is the one error type of the API: every non-2xx response becomes an
// *Error carrying the HTTP status and the contract's error code and message.
// Compare it with the sentinels using errors.Is, which matches on Code:
//
//	if errors.Is(err, client.ErrNotFound) { ... }
//
// or take it apart with errors.As:
//
//	var e *client.Error
//	if errors.As(err, &e) && e.Status == http.StatusServiceUnavailable { ... }
type Error struct {
	// Status is the HTTP status code of the response, or 0 when the client
	// rejected the call before sending it (for example an empty key).
	Status int
	// Code is the machine-readable error code, such as "not_found". It is
	// empty when the response did not carry a contract error body (a proxy's
	// 502 page, say).
	Code string
	// Message is the explanation meant for a person.
	Message string
	// RetryAfter is the delay asked for by a Retry-After header, sent with
	// 503 backend_unavailable and 429 rate_limited; 0 when absent.
	RetryAfter time.Duration
}

// Error returns "cpod storage: <status> <code>: <message>".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("cpod storage: ")
	if e.Status != 0 {
		b.WriteString(strconv.Itoa(e.Status))
		b.WriteByte(' ')
	}
	if e.Code != "" {
		b.WriteString(e.Code)
	} else {
		b.WriteString(http.StatusText(e.Status))
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is reports whether target is an *Error with the same, non-empty Code, so
// that errors.Is(err, ErrNotFound) holds for every not_found error whatever
// its status or message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code != "" && t.Code == e.Code
}

// Sentinels, one for each error code of the wire contract. Use them with
// errors.Is; they are never returned themselves.
var (
	// ErrInvalidRequest (400): a malformed path, key, tier, body or option.
	ErrInvalidRequest = &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "invalid request"}
	// ErrInvalidToken (401): a missing, malformed or expired token, or one
	// for an app that is not registered.
	ErrInvalidToken = &Error{Status: http.StatusUnauthorized, Code: "invalid_token", Message: "invalid token"}
	// ErrInvalidScope (403): the app did not declare the scope the call
	// needs; no token can grant it.
	ErrInvalidScope = &Error{Status: http.StatusForbidden, Code: "invalid_scope", Message: "scope not declared by the app"}
	// ErrInsufficientScope (403): the app declared the scope but the token
	// does not carry it.
	ErrInsufficientScope = &Error{Status: http.StatusForbidden, Code: "insufficient_scope", Message: "scope not granted to the token"}
	// ErrUserRequired (403): a user-tier call with a token that has no user.
	ErrUserRequired = &Error{Status: http.StatusForbidden, Code: "user_required", Message: "user tier needs a user token"}
	// ErrNotFound (404): the file or key does not exist. Collection.Get and
	// KV.Get report a missing value with found == false instead. Only this
	// code means missing: any other 404 is an error.
	ErrNotFound = &Error{Status: http.StatusNotFound, Code: "not_found", Message: "not found"}
	// ErrUnknownEndpoint (404): no endpoint of the server has this path,
	// almost always a wrong base URL (one with /v1 twice, or a wrong
	// prefix). Its message names the URL called.
	ErrUnknownEndpoint = &Error{Status: http.StatusNotFound, Code: "unknown_endpoint", Message: "unknown endpoint"}
	// ErrConflict (409): the request conflicts with the current state, such
	// as registering an app whose client_id exists.
	ErrConflict = &Error{Status: http.StatusConflict, Code: "conflict", Message: "conflict"}
	// ErrTooLarge (413): a file, document or value over the server's limit.
	ErrTooLarge = &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: "too large"}
	// ErrInvalidCursor (400): a cursor that was altered or belongs to
	// another query.
	ErrInvalidCursor = &Error{Status: http.StatusBadRequest, Code: "invalid_cursor", Message: "invalid cursor"}
	// ErrNotInteger (409): KV.Incr on a value that is not an integer, or
	// whose result would leave the int64 range.
	ErrNotInteger = &Error{Status: http.StatusConflict, Code: "not_integer", Message: "value is not an integer"}
	// ErrExpired (403): a signed URL past its expiry.
	ErrExpired = &Error{Status: http.StatusForbidden, Code: "expired", Message: "signed URL expired"}
	// ErrInvalidSignature (403): a signed URL that was changed.
	ErrInvalidSignature = &Error{Status: http.StatusForbidden, Code: "invalid_signature", Message: "invalid signature"}
	// ErrBackendUnavailable (503): a backing store did not answer; retry
	// after Error.RetryAfter.
	ErrBackendUnavailable = &Error{Status: http.StatusServiceUnavailable, Code: "backend_unavailable", Message: "backend unavailable"}
	// ErrRateLimited (429): the caller's tenant, or its app within the
	// tenant, is over the server's rate limit; nothing was done. Retry after
	// Error.RetryAfter (whole seconds, rounded up by the server).
	ErrRateLimited = &Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: "rate limited"}
	// ErrInternal (500): an unexpected server failure.
	ErrInternal = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	// ErrInsufficientStorage (507): the server's storage is out of space (a
	// full disk); the write stored nothing. It carries no RetryAfter:
	// retrying does not help until space is freed. Reads keep working.
	ErrInsufficientStorage = &Error{Status: http.StatusInsufficientStorage, Code: "insufficient_storage", Message: "insufficient storage"}
	// ErrQuotaExceeded (507): the write would take the tenant over one of
	// its quotas (bytes or count of files, documents or kv, set by the
	// server's operator); it stored nothing. Same status as
	// ErrInsufficientStorage, another code: errors.Is tells them apart. No
	// RetryAfter: retrying helps only once something is deleted or the
	// quota raised. Reads and deletes keep working; see [Client.Usage].
	ErrQuotaExceeded = &Error{Status: http.StatusInsufficientStorage, Code: "quota_exceeded", Message: "quota exceeded"}
)

// localError is the error for a call rejected before it is sent.
func localError(msg string) *Error {
	return &Error{Code: ErrInvalidRequest.Code, Message: msg}
}

// CheckResponse returns nil when resp has a 2xx status and an *Error built
// from its status, headers and JSON error body otherwise. It reads, but does
// not close, resp.Body. The client uses it for every call; it is exported for
// callers that fetch signed URLs (from [Files.URL]) with their own HTTP
// client and want the same typed errors, such as [ErrExpired].
func CheckResponse(resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	e := &Error{Status: resp.StatusCode}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if n, err := strconv.Atoi(ra); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil {
			e.RetryAfter = max(time.Until(t), 0)
		}
	}
	var body struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		e.Code, e.Message = body.Error, body.Message
	} else {
		// No contract body: a HEAD response, or something in between (a
		// proxy, a router). Take the code from Cpod-Error (the engine's
		// HEAD errors) or WWW-Authenticate (RFC 6750) when there is one,
		// else from the status for a HEAD, whose errors have no body.
		head := resp.Request != nil && resp.Request.Method == http.MethodHead
		if code := resp.Header.Get("Cpod-Error"); code != "" && head {
			e.Code = code
		} else if code := bearerError(resp.Header.Get("WWW-Authenticate")); code != "" {
			e.Code = code
		} else if head {
			e.Code = statusCode(resp.StatusCode)
		}
		e.Message = strings.TrimSpace(string(raw))
		if len(e.Message) > 512 {
			e.Message = e.Message[:512]
		}
	}
	if e.Status == http.StatusNotFound && e.Code != ErrNotFound.Code && resp.Request != nil {
		// Not a missing value but no such endpoint (or someone else's
		// 404): say which URL was called, since the base URL is the usual
		// mistake. Without its query, which may carry a signature.
		u := *resp.Request.URL
		u.RawQuery, u.Fragment, u.User = "", "", nil
		called := resp.Request.Method + " " + u.String() + ": "
		if e.Code == ErrUnknownEndpoint.Code && e.Message != "" {
			called += e.Message // the engine's, which names the base URL
		} else {
			called += "no such endpoint: is the client's base URL right? (it ends before /v1)"
			if e.Message != "" {
				called += ": " + e.Message
			}
		}
		e.Message = called
	}
	return e
}

// bearerError returns the error parameter of a Bearer WWW-Authenticate
// challenge, "" when there is none.
func bearerError(h string) string {
	const key = `error="`
	i := strings.Index(h, key)
	if i < 0 || !strings.HasPrefix(strings.TrimSpace(strings.ToLower(h)), "bearer") {
		return ""
	}
	rest := h[i+len(key):]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return rest[:j]
}

// statusCode guesses the contract code of a bodyless error response. A 404
// is not guessed: without Cpod-Error it may be any server's (a proxy, a
// wrong base URL), and only not_found reads as missing.
func statusCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return ErrInvalidRequest.Code
	case http.StatusUnauthorized:
		return ErrInvalidToken.Code
	case http.StatusRequestEntityTooLarge:
		return ErrTooLarge.Code
	case http.StatusTooManyRequests:
		return ErrRateLimited.Code
	case http.StatusServiceUnavailable:
		return ErrBackendUnavailable.Code
	case http.StatusInternalServerError:
		return ErrInternal.Code
	}
	return ""
}

// errorBody decodes an {"error","message"} object or a bare code string, as
// found in batch results.
func errorBody(b []byte) (*Error, error) {
	var code string
	if err := json.Unmarshal(b, &code); err == nil {
		if code == "" {
			return nil, nil
		}
		return &Error{Code: code}, nil
	}
	var obj struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("error is neither a string nor an object: %w", err)
	}
	if obj.Error == "" && obj.Message == "" {
		return nil, nil
	}
	return &Error{Code: obj.Error, Message: obj.Message}, nil
}
