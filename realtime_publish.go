package storage

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// The write paths call these after the backend acknowledged a write: one
// line each in documents.go, documents_versions.go, kv.go, files.go and
// admin.go. A failed publish is logged and never fails the write, which
// has happened; the event is then missing (see README, "Change feeds").
// The publish outlives the request's context, so a client that leaves
// right after its write does not take the event with it.

func (e *Engine) publish(c *call, topic, typ, key string, data []byte) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), e.cfg.BackendTimeout)
	defer cancel()
	if err := e.rt.hub.publish(ctx, topic, typ, key, data); err != nil {
		e.log.Warn("storage: publishing a change failed", "request_id", c.reqID, "err", err)
	}
}

// eventData is the data line of an event: {"key","value"?,"etag"?,"size"?}.
// value is JSON text (nil: none); a value over rtMaxInlineValue is left
// out, the client reads it.
func eventData(key string, value []byte, etag string, size int64) []byte {
	k, _ := json.Marshal(key)
	b := make([]byte, 0, len(k)+len(value)+len(etag)+48)
	b = append(b, `{"key":`...)
	b = append(b, k...)
	if value != nil && len(value) <= rtMaxInlineValue {
		b = append(b, `,"value":`...)
		b = append(b, value...)
	}
	if etag != "" {
		t, _ := json.Marshal(etag)
		b = append(b, `,"etag":`...)
		b = append(b, t...)
	}
	if size >= 0 {
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, size, 10)
	}
	return append(b, '}')
}

// docChanged publishes a document's set (value: its stored JSON) or
// delete (value nil).
func (d *documents) docChanged(c *call, t target, key string, value []byte, g docTag) {
	if value == nil {
		d.e.publish(c, docTopic(t.loc, t.coll), "delete", key, eventData(key, nil, "", -1))
		return
	}
	d.e.publish(c, docTopic(t.loc, t.coll), "set", key, eventData(key, value, g.etag(), -1))
}

// batchChanged publishes every op of a batch that succeeded, in order.
func (d *documents) batchChanged(c *call, t target, ops []batchOp, g docTag) {
	for _, op := range ops {
		if op.err != nil {
			continue
		}
		if op.op == "set" {
			d.docChanged(c, t, op.key, op.value.json, g)
		} else {
			d.docChanged(c, t, op.key, nil, g)
		}
	}
}

// kvChanged publishes a kv set (value: the stored string; nil for a TTL
// change, which sends the key alone) or, with del, a delete. k is the
// location key of kvKey.
func (e *Engine) kvChanged(c *call, k string, value *string, del bool) {
	loc, key, ok := splitLocation(k)
	if !ok {
		return
	}
	switch {
	case del:
		e.publish(c, kvTopic(loc), "delete", key, eventData(key, nil, "", -1))
	case value == nil:
		e.publish(c, kvTopic(loc), "set", key, eventData(key, nil, "", -1))
	default:
		v, _ := json.Marshal(*value)
		e.publish(c, kvTopic(loc), "set", key, eventData(key, v, "", -1))
	}
}

// splitLocation splits a location key into the prefix Resolve built
// ("{tenant}/apps/{app}/", "{tenant}/users/{user}/" or "{tenant}/shared/";
// ids hold no '/') and the relative name.
func splitLocation(lk string) (loc, name string, ok bool) {
	i := strings.IndexByte(lk, '/')
	if i < 0 {
		return "", "", false
	}
	rest := lk[i+1:]
	switch {
	case strings.HasPrefix(rest, "shared/"):
		n := i + 1 + len("shared/")
		return lk[:n], lk[n:], true
	case strings.HasPrefix(rest, "apps/"), strings.HasPrefix(rest, "users/"):
		seg := strings.IndexByte(rest, '/')
		j := strings.IndexByte(rest[seg+1:], '/')
		if j < 0 {
			return "", "", false
		}
		n := i + 1 + seg + 1 + j + 1
		return lk[:n], lk[n:], true
	}
	return "", "", false
}

// fileChanged publishes a file write (size and etag) or, with size < 0, a
// delete. key is the resolved location key, name the relative path.
func (e *Engine) fileChanged(c *call, key, name string, size int64, etag string) {
	if !strings.HasSuffix(key, name) {
		return
	}
	topic := fileTopic(key[:len(key)-len(name)])
	if size < 0 {
		e.publish(c, topic, "delete", name, eventData(name, nil, "", -1))
		return
	}
	e.publish(c, topic, "write", name, eventData(name, nil, etag, size))
}

// erased resets every stream under an erased location prefix: their
// clients re-read (and find the data gone).
func (e *Engine) erased(c *call, prefix string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 4*e.cfg.BackendTimeout+time.Second)
	defer cancel()
	if err := e.rt.hub.reset(ctx, prefix); err != nil {
		e.log.Warn("storage: resetting the change feeds of an erase failed", "request_id", c.reqID, "err", err)
	}
}

// kvSet, kvDeleted and kvTTLChanged are kvChanged for each write of kv.go.
func (e *Engine) kvSet(c *call, k, value string) { e.kvChanged(c, k, &value, false) }
func (e *Engine) kvDeleted(c *call, k string)    { e.kvChanged(c, k, nil, true) }
func (e *Engine) kvTTLChanged(c *call, k string) { e.kvChanged(c, k, nil, false) }
