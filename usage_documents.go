package storage

import "context"

// Usage of documents (see usage.go). On SQLite the store counts them
// itself (triggers, usage_sqlite.go). On MongoDB a write holds the
// document's lock (in Redis, usage_files.go; a batch all of its keys at
// once) while it reads the size of the document it replaces, writes, and
// adds the difference once the write is acknowledged: writes of one
// document through the engine take turns, so racing writers count it once.

// lockDocs takes the usage locks of the documents at keys (MongoDB; none
// on SQLite).
func (d *documents) lockDocs(ctx context.Context, t target, keys ...string) (func(), error) {
	if !d.e.usage.explicit(primDocuments) {
		return func() {}, nil
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = "doc\x00" + t.id(k)
	}
	return d.e.locks.lockAll(ctx, t.loc+t.coll, names)
}

// oldDoc reads the document at key: its JSON text's size, or none.
func (d *documents) oldDoc(ctx context.Context, t target, key string) (oldValue, error) {
	js, _, err := d.store.get(ctx, t, key)
	if isDocNotFound(err) {
		return oldValue{}, nil
	}
	if err != nil {
		return oldValue{}, err
	}
	return oldValue{size: int64(len(js)), existed: true}, nil
}

// lockOld takes the document's usage lock (lockDocs) and reads what it
// holds (oldForUsage); the release is never nil.
func (d *documents) lockOld(ctx context.Context, t target, key string) (oldValue, func(), error) {
	unlock, err := d.lockDocs(ctx, t, key)
	if err != nil {
		return oldValue{}, noRelease, err
	}
	old, err := d.oldForUsage(ctx, t, key)
	return old, unlock, err
}

// oldForUsage is oldDoc where the engine counts documents (MongoDB), and
// nothing where the store does (SQLite).
func (d *documents) oldForUsage(ctx context.Context, t target, key string) (oldValue, error) {
	if !d.e.usage.explicit(primDocuments) {
		return oldValue{}, nil
	}
	return d.oldDoc(ctx, t, key)
}

// admitSet checks the quota for a set of n bytes at key and returns what it
// replaces (oldForUsage), and the release of its admission (usage.go).
func (d *documents) admitSet(ctx context.Context, t target, key string, n int64) (oldValue, func(), error) {
	old, err := d.oldForUsage(ctx, t, key)
	if err != nil {
		return old, noRelease, err
	}
	read := func(ctx context.Context) (usageFigures, error) {
		if d.e.usage.explicit(primDocuments) {
			return old.freed(), nil
		}
		o, err := d.oldDoc(ctx, t, key)
		return o.freed(), err
	}
	release, err := d.e.admit(ctx, tenantOfKey(t.loc), primDocuments, usageFigures{Bytes: n, Count: 1}, read)
	return old, release, err
}

// admitBatch checks the quota for a batch's sets together and returns what
// each valid op replaces (on MongoDB; by index).
func (d *documents) admitBatch(ctx context.Context, t target, ops []batchOp) ([]oldValue, func(), error) {
	olds := make([]oldValue, len(ops))
	read := func(ctx context.Context) error {
		var keys []string
		for _, op := range ops {
			if op.err == nil {
				keys = append(keys, op.key)
			}
		}
		var sizes map[string]int64
		if d.e.usage.explicit(primDocuments) {
			var err error
			if sizes, err = d.sizesOf(ctx, t, keys); err != nil {
				return err
			}
		} else {
			sizes = map[string]int64{}
			for _, k := range keys {
				o, err := d.oldDoc(ctx, t, k)
				if err != nil {
					return err
				}
				if o.existed {
					sizes[k] = o.size
				}
			}
		}
		for i, op := range ops {
			if n, ok := sizes[op.key]; ok && op.err == nil {
				olds[i] = oldValue{size: n, existed: true}
			}
		}
		return nil
	}
	explicit := d.e.usage.explicit(primDocuments)
	if explicit {
		if err := read(ctx); err != nil {
			return nil, noRelease, err
		}
	}
	// What the batch stores: the last op of each key decides.
	var add usageFigures
	last := map[string]int{}
	for i, op := range ops {
		if op.err == nil {
			last[op.key] = i
		}
	}
	for _, i := range last {
		if op := ops[i]; op.op == "set" {
			add.Bytes += int64(len(op.value.json))
			add.Count++
		}
	}
	release, err := d.e.admit(ctx, tenantOfKey(t.loc), primDocuments, add, func(ctx context.Context) (usageFigures, error) {
		if !explicit {
			if err := read(ctx); err != nil {
				return usageFigures{}, err
			}
		}
		// What the sets replace and the deletes free, each key once.
		var freed usageFigures
		seen := map[string]bool{}
		for i, op := range ops {
			if op.err == nil && !seen[op.key] {
				seen[op.key] = true
				f := olds[i].freed()
				freed.Bytes += f.Bytes
				freed.Count += f.Count
			}
		}
		return freed, nil
	})
	return olds, release, err
}

// batchAccount adds the ops that succeeded (on MongoDB).
func (d *documents) batchAccount(c *call, t target, ops []batchOp, olds []oldValue) {
	if !d.e.usage.explicit(primDocuments) {
		return
	}
	seen := map[string]bool{}
	var chs []usageChange
	for i := len(ops) - 1; i >= 0; i-- { // the last op of a key decides
		op := ops[i]
		if op.err != nil || seen[op.key] {
			continue
		}
		seen[op.key] = true
		n := int64(-1)
		if op.op == "set" {
			n = int64(len(op.value.json))
		}
		chs = append(chs, olds[i].change(t.loc, primDocuments, n))
	}
	d.e.account(c.ctx, c.reqID, tenantOfKey(t.loc), chs...)
}
