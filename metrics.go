package storage

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics (Config.Metrics). The engine registers these collectors on the
// embedder's prometheus.Registerer:
//
//	cpod_storage_requests_total{route,method,code}            counter
//	cpod_storage_request_duration_seconds{route,method}       histogram
//	cpod_storage_backend_errors_total{backend}                counter
//	cpod_storage_bytes_total{primitive,direction}             counter
//	cpod_storage_rate_limited_total                           counter
//	cpod_storage_quota_rejections_total{primitive}            counter
//
// Every label value comes from a small fixed set, never from the request:
// route is the pattern of the route table without its declared query names
// ("/v1/storage/kv/{key...}"), or "unmatched" when no route's path fits;
// method is the request method when it is one of GET, HEAD, POST, PUT,
// PATCH, DELETE, OPTIONS, else "other"; code is the HTTP status sent, as a
// string; backend is "s3", "mongodb" or "redis"; primitive is "files",
// "documents" or "kv" and direction "in" or "out". No tenant, app, user,
// key, path, query or token ever becomes a label, so the number of series
// is bounded by the route table, whatever the traffic.
//
// A request that fits a route's path but not its method (405) and a CORS
// preflight are counted under that route's pattern with their own method.
// The duration runs from ServeHTTP's start to its return: for a file
// transfer, the whole transfer.
//
// backend_errors_total counts the backend failures the adapters translate
// (503 backend_unavailable or 500 internal, from errors.go backendError,
// kvBackendError, s3Error, docsBackendError) once per request answered with
// one, plus the failures that no answer shows: a file download that S3 cut
// after the status was sent, and a failed app lookup (counted once per
// lookup in MongoDB, shared by the requests waiting for it, including those
// then served from AppStaleIfError).
//
// bytes_total: for files, the file bytes streamed (the body of PUT as read
// from the client, the body of GET sent to it), not the JSON of listings or
// results; for kv and documents, the bytes of the request bodies read and
// of the response bodies written (JSON, error answers included) by their
// routes. Other routes (apps, health, openapi) count no bytes.
//
// rate_limited_total counts the requests answered 429 rate_limited by
// Config.RateLimit (see ratelimit.go), whichever allowance was spent. It
// has no label: which tenant is limited is what one would ask, and a tenant
// is never a label (requests_total{code="429"} has the routes).
//
// quota_rejections_total counts the writes answered 507 quota_exceeded
// (usage.go), by primitive; no tenant, for the same reason.
//
// Two engines given the same Registerer share the collectors: the second
// finds them already registered (prometheus.AlreadyRegisteredError) and
// counts into them, so the series sum both engines' requests. A collector of
// another type already registered under one of these names makes New fail.
//
// Without Config.Metrics the engine does none of this work.

// The values of the "backend" label.
const (
	backendS3     = "s3"
	backendMongo  = "mongodb"
	backendSQLite = "sqlite"
	backendRedis  = "redis"
)

// unmatchedRoute is the route label of a request whose path fits no route.
const unmatchedRoute = "unmatched"

// The primitives whose bytes are counted.
const (
	primitiveNone = iota
	primitiveFiles
	primitiveDocuments
	primitiveKV
)

// durationBuckets are the histogram's upper bounds, in seconds:
// prometheus.DefBuckets and, for file transfers, 30 s and 2 min.
var durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 120}

// metrics are an engine's collectors, with the series of its routes bound
// once so that a request looks nothing up by its labels.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	backends *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	limited  prometheus.Counter
	quota    *prometheus.CounterVec

	s3Errors, mongoErrors, redisErrors, sqliteErrors prometheus.Counter
	filesIn, filesOut                                prometheus.Counter
	docsIn, docsOut                                  prometheus.Counter
	kvIn, kvOut                                      prometheus.Counter
}

// routeMetrics are the series of one route (its pattern and method).
type routeMetrics struct {
	route, method string
	primitive     int
	duration      prometheus.Observer
	requests      *prometheus.CounterVec
	mu            sync.Mutex                   // serializes additions to codes
	codes         atomic.Pointer[[]codeSeries] // the codes this route answered so far
}

type codeSeries struct {
	status int
	c      prometheus.Counter
}

// counter returns the requests counter of the status, bound on first use:
// a route answers few distinct statuses, so a short copy-on-write list is
// scanned without a lock or an allocation.
func (rm *routeMetrics) counter(status int) prometheus.Counter {
	if p := rm.codes.Load(); p != nil {
		for _, s := range *p {
			if s.status == status {
				return s.c
			}
		}
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	var old []codeSeries
	if p := rm.codes.Load(); p != nil {
		old = *p
		for _, s := range old {
			if s.status == status {
				return s.c
			}
		}
	}
	c := rm.requests.WithLabelValues(rm.route, rm.method, strconv.Itoa(status))
	list := append(append(make([]codeSeries, 0, len(old)+1), old...), codeSeries{status, c})
	rm.codes.Store(&list)
	return c
}

// newMetrics registers the engine's collectors on reg, reusing those
// already registered there (another engine's); docs names the
// documents store (backendMongo or backendSQLite), whose error series is
// created at zero, as redis' is when the engine uses Redis.
func newMetrics(reg prometheus.Registerer, docs string, redis bool) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cpod_storage_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cpod_storage_request_duration_seconds",
			Help:    "Time from the start of a request to the end of its answer (file transfers included), by route pattern and method.",
			Buckets: durationBuckets,
		}, []string{"route", "method"}),
		backends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cpod_storage_backend_errors_total",
			Help: "Backend failures (unavailable, timed out or failed), by backend: s3, mongodb, redis.",
		}, []string{"backend"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cpod_storage_bytes_total",
			Help: "Body bytes: file bytes streamed for files; request and response bodies for documents and kv. Direction in is from the client.",
		}, []string{"primitive", "direction"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cpod_storage_rate_limited_total",
			Help: "Requests refused with 429 rate_limited by the rate limits per tenant and per app (Config.RateLimit).",
		}),
		quota: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cpod_storage_quota_rejections_total",
			Help: "Writes refused with 507 quota_exceeded by a tenant's quota, by primitive: files, documents, kv.",
		}, []string{"primitive"}),
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.backends, err = register(reg, m.backends); err != nil {
		return nil, err
	}
	if m.bytes, err = register(reg, m.bytes); err != nil {
		return nil, err
	}
	if m.limited, err = register(reg, m.limited); err != nil {
		return nil, err
	}
	if m.quota, err = register(reg, m.quota); err != nil {
		return nil, err
	}
	m.s3Errors = m.backends.WithLabelValues(backendS3)
	if docs == backendSQLite {
		m.sqliteErrors = m.backends.WithLabelValues(backendSQLite)
	} else {
		m.mongoErrors = m.backends.WithLabelValues(backendMongo)
	}
	if redis {
		m.redisErrors = m.backends.WithLabelValues(backendRedis)
	}
	m.filesIn, m.filesOut = m.bytes.WithLabelValues("files", "in"), m.bytes.WithLabelValues("files", "out")
	m.docsIn, m.docsOut = m.bytes.WithLabelValues("documents", "in"), m.bytes.WithLabelValues("documents", "out")
	m.kvIn, m.kvOut = m.bytes.WithLabelValues("kv", "in"), m.bytes.WithLabelValues("kv", "out")
	return m, nil
}

// register registers c on reg, or returns the collector of the same
// description already registered there.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("Config.Metrics: %w", err)
}

// bindRoutes binds the series of each route.
func (m *metrics) bindRoutes(routes []*compiledRoute) {
	for _, rt := range routes {
		label := routeLabel(rt.pattern)
		rm := &routeMetrics{route: label, method: rt.method, requests: m.requests}
		rm.duration = m.duration.WithLabelValues(label, rt.method)
		switch {
		case strings.HasPrefix(label, "/v1/storage/files"), strings.HasPrefix(label, "/v1/storage/signed"):
			rm.primitive = primitiveFiles
		case strings.HasPrefix(label, "/v1/storage/db/"):
			rm.primitive = primitiveDocuments
		case strings.HasPrefix(label, "/v1/storage/kv/"):
			rm.primitive = primitiveKV
		}
		rt.metrics = rm
	}
}

// routeLabel is a route pattern without its declared query names.
func routeLabel(pattern string) string {
	p, _, _ := strings.Cut(pattern, "?")
	return p
}

// methodLabel is the method label of a request's method.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return method
	}
	return "other"
}

// metricsWriter records the status and the body bytes of a response.
type metricsWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *metricsWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *metricsWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush lets handlers stream; Unwrap lets http.ResponseController reach the
// connection (an upload's read deadline).
func (w *metricsWriter) Flush()                      { _ = http.NewResponseController(w.ResponseWriter).Flush() }
func (w *metricsWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// begin starts measuring a call: its responses go through c.mw.
func (m *metrics) begin(c *call) {
	c.start = time.Now()
	c.mw = metricsWriter{ResponseWriter: c.w}
	c.w = &c.mw
}

// end records a call once it is answered. A change feed that took its
// connection over (c.detached, realtime_idle.go) is recorded by routed
// when the stream really ends.
func (m *metrics) end(e *Engine, c *call) {
	if c.detached {
		return
	}
	elapsed := time.Since(c.start).Seconds()
	status := c.mw.status
	if status == 0 {
		status = http.StatusOK
	}
	if c.rt != nil {
		m.routed(c.rt, elapsed, status, c.bodyIn, c.mw.bytes)
		return
	}
	// Not routed (404, 405, a CORS preflight): the first route whose path
	// fits, whatever its method, else unmatched.
	route := unmatchedRoute
	path := c.r.URL.EscapedPath()
	var sp spans
	for _, rt := range e.router {
		if rt.match(path, &sp) {
			route = rt.metrics.route
			break
		}
	}
	method := methodLabel(c.r.Method)
	m.duration.WithLabelValues(route, method).Observe(elapsed)
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
}

// routed records a call of route rt that took elapsed seconds.
func (m *metrics) routed(rt *compiledRoute, elapsed float64, status int, bodyIn, bytesOut int64) {
	rm := rt.metrics
	rm.duration.Observe(elapsed)
	rm.counter(status).Inc()
	switch rm.primitive {
	case primitiveDocuments:
		m.docsIn.Add(float64(bodyIn))
		m.docsOut.Add(float64(bytesOut))
	case primitiveKV:
		m.kvIn.Add(float64(bodyIn))
		m.kvOut.Add(float64(bytesOut))
	}
}

// backendError counts a backend failure; backend "" is none. A nil m counts
// nothing.
func (m *metrics) backendError(backend string) {
	if m == nil {
		return
	}
	switch backend {
	case backendS3:
		m.s3Errors.Inc()
	case backendMongo:
		if m.mongoErrors != nil {
			m.mongoErrors.Inc()
		}
	case backendSQLite:
		if m.sqliteErrors != nil {
			m.sqliteErrors.Inc()
		}
	case backendRedis:
		if m.redisErrors != nil {
			m.redisErrors.Inc()
		}
	}
}

// rateLimitedInc counts a request refused by a rate limit. A nil m counts
// nothing.
func (m *metrics) rateLimitedInc() {
	if m != nil {
		m.limited.Inc()
	}
}

// quotaRejected counts a write refused by a quota. A nil m counts nothing.
func (m *metrics) quotaRejected(p primitive) {
	if m != nil {
		m.quota.WithLabelValues(p.String()).Inc()
	}
}

// fileBytes counts file bytes streamed from (in) and to (out) clients.
func (m *metrics) fileBytes(in, out int64) {
	if m == nil {
		return
	}
	if in > 0 {
		m.filesIn.Add(float64(in))
	}
	if out > 0 {
		m.filesOut.Add(float64(out))
	}
}

// markBackend records on *err, when it is a backend failure (503
// backend_unavailable, 507 insufficient_storage or 500 internal), the
// backend it came from, for cpod_storage_backend_errors_total. Adapters
// defer it on their result.
func markBackend(backend string, err *error) {
	e, ok := (*err).(*Error)
	if !ok || e.backend != "" {
		return
	}
	if e.Code == CodeBackendUnavailable || e.Code == CodeInternal || e.Code == CodeInsufficientStorage {
		c := *e
		c.backend = backend
		*err = &c
	}
}

// backendOf names the backend of a backendError op: "redis ..." and
// "s3 ..." for those adapters, anything else (apps, documents) MongoDB.
func backendOf(op string) string {
	switch first, _, _ := strings.Cut(op, " "); first {
	case "redis":
		return backendRedis
	case "s3":
		return backendS3
	}
	return backendMongo
}
