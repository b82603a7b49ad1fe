package storage

import (
	"context"
	"strconv"
	"time"
)

// Usage of kv (see usage.go). On SQLite the store counts kv itself
// (triggers, usage_sqlite.go). On Redis each write is one script that
// reports the size and expiry of what it replaced (kv_redis_usage.go),
// and the engine adds the difference once Redis acknowledged it: exact
// for racing writers of one key too, since each write's difference is
// taken against the value it actually replaced.

// kvMaxIntText is the most bytes an INCR's value can take ("-9223372036854775808").
const kvMaxIntText = 20

// admitKV checks the quota for a set of n bytes at k.
func (e *Engine) admitKV(ctx context.Context, k string, n int64) (func(), error) {
	return e.admit(ctx, tenantOfKey(k), primKV, usageFigures{Bytes: n, Count: 1}, func(ctx context.Context) (usageFigures, error) {
		if q, ok := e.kv.(*sqliteKV); ok { // an expired row counts until the purge
			size, found, err := q.storedSize(ctx, k)
			if err != nil || !found {
				return usageFigures{}, err
			}
			return usageFigures{Bytes: size, Count: 1}, nil
		}
		text, _, found, err := e.kv.get(ctx, k)
		if err != nil || !found {
			return usageFigures{}, err
		}
		return usageFigures{Bytes: int64(len(text)), Count: 1}, nil
	})
}

// admitIncr checks the quota for an INCR of k by by: at most kvMaxIntText
// bytes and one key; at a limit, what the sum's text adds exactly.
func (e *Engine) admitIncr(ctx context.Context, k string, by int64) (func(), error) {
	most := usageFigures{Bytes: kvMaxIntText, Count: 1}
	return e.admit(ctx, tenantOfKey(k), primKV, most, func(ctx context.Context) (usageFigures, error) {
		text, _, found, err := e.kv.get(ctx, k)
		if err != nil {
			return usageFigures{}, err
		}
		if !found { // a new counter: the text of by
			return usageFigures{Bytes: kvMaxIntText - int64(len(strconv.FormatInt(by, 10)))}, nil
		}
		n, ok := kvInt(text)
		sum, ok2 := kvAdd(n, by)
		if !ok || !ok2 {
			return most, nil // the INCR answers 409 not_integer itself
		}
		grow := int64(len(strconv.FormatInt(sum, 10)) - len(text))
		return usageFigures{Bytes: kvMaxIntText - grow, Count: 1}, nil
	})
}

// kvCounter is the store's usage writer when the engine counts kv.
func (e *Engine) kvCounter() kvUsageWriter {
	if !e.usage.explicit(primKV) {
		return nil
	}
	w, _ := e.kv.(kvUsageWriter)
	return w
}

// kvChange is the usage change of a kv write at location key k.
func kvChange(k string, w kvWrite) usageChange {
	loc, _, _ := splitLocation(k)
	ch := usageChange{loc: loc, prim: primKV}
	if w.old.ok {
		if w.old.exp > 0 {
			ch.end = &kvVersion{key: k, exp: w.old.exp, size: w.old.size}
		} else {
			ch.bytes, ch.count = -w.old.size, -1
		}
	}
	if w.new.ok {
		if w.new.exp > 0 {
			ch.create = &kvVersion{key: k, exp: w.new.exp, size: w.new.size}
		} else {
			ch.bytes += w.new.size
			ch.count++
		}
	}
	return ch
}

func (e *Engine) kvSetCounted(c *call, ctx context.Context, k, value string, ttl time.Duration, cond kvCond) error {
	u := e.kvCounter()
	if u == nil {
		return e.kv.set(ctx, k, value, ttl, cond)
	}
	w, err := u.setU(ctx, k, value, ttl, cond)
	if err == nil {
		e.account(ctx, c.reqID, tenantOfKey(k), kvChange(k, w))
	}
	return err
}

func (e *Engine) kvIncrCounted(c *call, ctx context.Context, k string, by int64) (int64, error) {
	u := e.kvCounter()
	if u == nil {
		return e.kv.incr(ctx, k, by)
	}
	n, w, err := u.incrU(ctx, k, by)
	if err == nil {
		e.account(ctx, c.reqID, tenantOfKey(k), kvChange(k, w))
	}
	return n, err
}

func (e *Engine) kvRemoveCounted(c *call, ctx context.Context, k string, cond kvCond) error {
	u := e.kvCounter()
	if u == nil {
		return e.kv.remove(ctx, k, cond)
	}
	w, err := u.removeU(ctx, k, cond)
	if err == nil {
		e.account(ctx, c.reqID, tenantOfKey(k), kvChange(k, w))
	}
	return err
}

func (e *Engine) kvExpireCounted(c *call, ctx context.Context, k string, ttl time.Duration) (bool, error) {
	u := e.kvCounter()
	if u == nil {
		return e.kv.expire(ctx, k, ttl)
	}
	found, w, err := u.expireU(ctx, k, ttl)
	if err == nil && found {
		e.account(ctx, c.reqID, tenantOfKey(k), kvChange(k, w))
	}
	return found, err
}
