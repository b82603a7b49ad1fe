package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
)

// Code is the machine-readable error code of the wire contract. It is sent as
// the "error" field of every error response, and it alone decides the HTTP
// status (see [Code.Status]).
type Code string

// The codes of the wire contract.
const (
	CodeInvalidRequest     Code = "invalid_request"
	CodeInvalidToken       Code = "invalid_token"
	CodeInvalidScope       Code = "invalid_scope"
	CodeInsufficientScope  Code = "insufficient_scope"
	CodeUserRequired       Code = "user_required"
	CodeNotFound           Code = "not_found"
	CodeUnknownEndpoint    Code = "unknown_endpoint"
	CodeConflict           Code = "conflict"
	CodeTooLarge           Code = "too_large"
	CodeInvalidCursor      Code = "invalid_cursor"
	CodeNotInteger         Code = "not_integer"
	CodeExpired            Code = "expired"
	CodeInvalidSignature   Code = "invalid_signature"
	CodeBackendUnavailable Code = "backend_unavailable"
	CodeInternal           Code = "internal"
	// CodeInsufficientStorage (507): the backend is out of space (a full
	// disk, a full bucket); nothing was stored. Never sent with
	// Retry-After: retrying does not help until someone frees space.
	CodeInsufficientStorage Code = "insufficient_storage"
	// CodeQuotaExceeded (507): the write would take its tenant over a
	// quota (Config.DefaultQuota, PUT /v1/admin/tenants/{tenant}/quota);
	// nothing was stored. Never sent with Retry-After: deletes free room.
	CodeQuotaExceeded Code = "quota_exceeded"
	CodeRateLimited   Code = "rate_limited"
)

// Status is the one place that maps an error code to its HTTP status.
func (c Code) Status() int {
	switch c {
	case CodeInvalidRequest, CodeInvalidCursor:
		return http.StatusBadRequest
	case CodeInvalidToken:
		return http.StatusUnauthorized
	case CodeInvalidScope, CodeInsufficientScope, CodeUserRequired, CodeExpired, CodeInvalidSignature:
		return http.StatusForbidden
	case CodeNotFound, CodeUnknownEndpoint:
		return http.StatusNotFound
	case CodeConflict, CodeNotInteger:
		return http.StatusConflict
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeRateLimited:
		return http.StatusTooManyRequests
	case CodeBackendUnavailable:
		return http.StatusServiceUnavailable
	case CodeInsufficientStorage, CodeQuotaExceeded:
		return http.StatusInsufficientStorage
	default:
		return http.StatusInternalServerError
	}
}

// Error is the one error type of the engine. Its Code decides the response;
// its Message is safe to show to the caller; Err, when set, is the internal
// cause: it is logged, never sent.
//
// Use errors.Is with the sentinels (ErrNotFound, ...): an *Error matches a
// sentinel when their codes are equal.
type Error struct {
	Code    Code
	Message string
	Err     error
	// status overrides Code.Status() for the few statuses that share a code
	// (405, 416, 400 invalid_scope at registration). Zero means Code.Status().
	status int
	// backend is the backend of a translated backend failure ("s3",
	// "mongodb", "redis"), for cpod_storage_backend_errors_total.
	backend string
	// logReason is what the log line of a refused request says when it
	// must differ from Message (which may quote "Bearer <token>", a
	// word the logs never hold). Empty means Message.
	logReason string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	if e.Message == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Message
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// HTTPStatus is the status the engine answers this error with.
func (e *Error) HTTPStatus() int {
	if e.status != 0 {
		return e.status
	}
	return e.Code.Status()
}

// Sentinel errors, one per code, for errors.Is.
var (
	ErrInvalidRequest     = &Error{Code: CodeInvalidRequest}
	ErrInvalidToken       = &Error{Code: CodeInvalidToken}
	ErrInvalidScope       = &Error{Code: CodeInvalidScope}
	ErrInsufficientScope  = &Error{Code: CodeInsufficientScope}
	ErrUserRequired       = &Error{Code: CodeUserRequired}
	ErrNotFound           = &Error{Code: CodeNotFound}
	ErrUnknownEndpoint    = &Error{Code: CodeUnknownEndpoint}
	ErrConflict           = &Error{Code: CodeConflict}
	ErrTooLarge           = &Error{Code: CodeTooLarge}
	ErrInvalidCursor      = &Error{Code: CodeInvalidCursor}
	ErrNotInteger         = &Error{Code: CodeNotInteger}
	ErrExpired            = &Error{Code: CodeExpired}
	ErrInvalidSignature   = &Error{Code: CodeInvalidSignature}
	ErrBackendUnavailable = &Error{Code: CodeBackendUnavailable}
	ErrInternal           = &Error{Code: CodeInternal}
	// ErrInsufficientStorage: a write the backend refused for lack of space.
	ErrInsufficientStorage = &Error{Code: CodeInsufficientStorage}
	ErrRateLimited         = &Error{Code: CodeRateLimited}
	// ErrQuotaExceeded: a write over its tenant's quota (usage.go).
	ErrQuotaExceeded = &Error{Code: CodeQuotaExceeded}
)

// errorf builds an *Error with a message for the caller.
func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// withStatus returns a copy of e answered with an explicit HTTP status.
func withStatus(e *Error, status int) *Error {
	c := *e
	c.status = status
	return &c
}

// errOutOfSpace is the answer to a write that a backend refused for lack of
// space (ENOSPC, SQLITE_FULL, MongoDB's OutOfDiskSpace, S3's
// XMinioStorageFull...): 507 insufficient_storage, no Retry-After. Each
// adapter recognises its backend's form of it and calls this, once.
func errOutOfSpace(op string, err error) *Error {
	return &Error{Code: CodeInsufficientStorage, Message: "the storage backend is out of space; nothing was stored", Err: fmt.Errorf("%s: %w", op, err)}
}

// isOutOfSpace reports whether err is the operating system's "no space left
// on device" or "disk quota exceeded".
func isOutOfSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// backendError translates an error from a backend client that the adapter did
// not recognise: the operating system's "no space left" becomes 507
// insufficient_storage, connection failures and timeouts 503
// backend_unavailable, anything else 500 internal. The cause is kept for the
// log and never reaches the response. Each adapter calls it once, after
// handling the errors it knows (not found, duplicate key, ...).
func backendError(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if isOutOfSpace(err) {
		e := errOutOfSpace(op, err)
		e.backend = backendOf(op)
		return e
	}
	if isUnavailable(err) {
		return &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: fmt.Errorf("%s: %w", op, err), backend: backendOf(op)}
	}
	return &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("%s: %w", op, err), backend: backendOf(op)}
}

// isUnavailable reports whether err looks like the backend could not be
// reached or did not answer in time.
func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

// toError converts any error into the *Error to answer with. Errors that are
// not *Error are internal.
func toError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Code: CodeBackendUnavailable, Message: "request canceled", Err: err}
	}
	return &Error{Code: CodeInternal, Message: "internal error", Err: err}
}
