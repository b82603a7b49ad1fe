package storage

import (
	"fmt"
	"net/url"
	"strings"
)

// The router matches a request against the route table (see route) without
// allocating: New compiles every pattern once into its segments, and a
// request's escaped path is walked segment by segment in place (no split,
// no map per route tried). Only the route that is chosen gets its parameters
// percent-decoded into the call's map. The rules are the ones route states:
// matched against the escaped path, never cleaned, values percent-decoded
// exactly once, the first route (in table order) whose path and method fit
// wins, and a path that fits only routes of other methods is 405 with Allow
// listing them.

// maxRouteParams caps the parameters of one pattern, so a match records
// their positions in a fixed array.
const maxRouteParams = 4

// segment is one '/'-separated part of a compiled pattern.
type segment struct {
	lit   string // a literal segment, compared exactly with the escaped one
	param string // the name of a {param} or {param...} segment, else ""
	rest  bool   // {param...}: the rest of the path, slashes included
}

// compiledRoute is a route with its pattern compiled by compileRoute.
type compiledRoute struct {
	route
	segs   []segment
	nparam int
	// query is the pattern's declared query names ("tier&prefix").
	query string
	// signed is a signed-URL route: a query it does not take is a changed
	// URL (403 invalid_signature), not a bad request.
	signed bool
	// metrics are the route's series, with Config.Metrics (see metrics.go).
	metrics *routeMetrics
}

// spans are the positions of a match's parameters in the path: [start, end).
type spans [maxRouteParams][2]int

// compileRoute compiles rt's pattern. A pattern that breaks the rules of
// route (a rest-of-path segment that is not last, too many parameters) is a
// programming error: it panics, in New.
func compileRoute(rt route) *compiledRoute {
	pattern, query, _ := strings.Cut(rt.pattern, "?")
	c := &compiledRoute{route: rt, query: query, signed: strings.HasPrefix(rt.pattern, signedPath)}
	parts := strings.Split(strings.TrimPrefix(pattern, "/"), "/")
	for i, p := range parts {
		switch {
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "...}"):
			if i != len(parts)-1 {
				panic(fmt.Sprintf("storage: route %q: a rest-of-path segment must be last", rt.pattern))
			}
			c.segs = append(c.segs, segment{param: p[1 : len(p)-4], rest: true})
			c.nparam++
		case strings.HasPrefix(p, "{"):
			c.segs = append(c.segs, segment{param: p[1 : len(p)-1]})
			c.nparam++
		default:
			c.segs = append(c.segs, segment{lit: p})
		}
	}
	if c.nparam > maxRouteParams {
		panic(fmt.Sprintf("storage: route %q has more than %d parameters", rt.pattern, maxRouteParams))
	}
	return c
}

func compileRoutes(routes []route) []*compiledRoute {
	out := make([]*compiledRoute, len(routes))
	for i, rt := range routes {
		out[i] = compileRoute(rt)
	}
	return out
}

// match reports whether the escaped path fits the pattern and records where
// its parameters are. It allocates nothing.
func (c *compiledRoute) match(path string, sp *spans) bool {
	path = strings.TrimPrefix(path, "/")
	// pos is where the next segment starts; done once the last one (the one
	// after the last '/') was taken. An empty path is one empty segment.
	pos, done, n := 0, false, 0
	for _, s := range c.segs {
		if done {
			return false // the path has fewer segments than the pattern
		}
		if s.rest {
			sp[n] = [2]int{pos, len(path)}
			return true
		}
		end := len(path)
		if i := strings.IndexByte(path[pos:], '/'); i >= 0 {
			end = pos + i
		} else {
			done = true
		}
		if s.param != "" {
			sp[n] = [2]int{pos, end}
			n++
		} else if path[pos:end] != s.lit {
			return false
		}
		pos = end + 1
	}
	return done // else the path has more segments than the pattern
}

// params percent-decodes the parameters of a match of path (exactly once).
// A value that is not valid percent-encoding is 400 invalid_request.
func (c *compiledRoute) params(path string, sp *spans) (map[string]string, error) {
	path = strings.TrimPrefix(path, "/")
	params := make(map[string]string, c.nparam)
	n := 0
	for _, s := range c.segs {
		if s.param == "" {
			continue
		}
		v, err := url.PathUnescape(path[sp[n][0]:sp[n][1]])
		if err != nil {
			return nil, errorf(CodeInvalidRequest, "the path is not valid percent-encoding")
		}
		params[s.param] = v
		n++
	}
	return params, nil
}

// findRoute returns the first route whose path and method fit, with the spans of
// its parameters, or nil and whether the path fits a route of another method.
func findRoute(routes []*compiledRoute, method, path string, sp *spans) (rt *compiledRoute, pathFits bool) {
	for _, rt := range routes {
		if !rt.match(path, sp) {
			continue
		}
		if rt.method == method {
			return rt, true
		}
		pathFits = true
	}
	return nil, pathFits
}

// allowedMethods lists, in table order, the methods of the routes the path fits:
// the Allow header of a 405.
func allowedMethods(routes []*compiledRoute, path string) []string {
	var sp spans
	var methods []string
	for _, rt := range routes {
		if rt.match(path, &sp) {
			methods = append(methods, rt.method)
		}
	}
	return methods
}

// match compiles pattern and matches the escaped path against it, returning
// the decoded parameters: ok is false when the path does not fit; err is set
// (with ok) when a parameter is not valid percent-encoding. The router uses
// compiled routes; this one-off form serves tests such as FuzzFilePath.
func match(pattern, path string) (params map[string]string, ok bool, err error) {
	c := compileRoute(route{pattern: pattern})
	var sp spans
	if !c.match(path, &sp) {
		return nil, false, nil
	}
	params, err = c.params(path, &sp)
	return params, true, err
}
