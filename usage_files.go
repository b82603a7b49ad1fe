// Usage of files (see usage.go): a file's write or delete holds the file's
// lock while it reads the old size, writes and adds the difference, so
// that racing writers of one file count it once.

package storage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/redis/go-redis/v9"
)

// keyLocks are locks by name. lock waits for the lock, at most until ctx
// ends (then 503 backend_unavailable), and returns its release; lockAll
// takes several at once, all or none (so two callers never hold one each
// of the other's), all of one group (a documents location and collection:
// on Redis their keys share a hash slot, so one script takes them).
type keyLocks interface {
	lock(ctx context.Context, name string) (func(), error)
	lockAll(ctx context.Context, group string, names []string) (func(), error)
}

// localLocks are in process: the embedded store, which one process owns.
type localLocks struct {
	mu sync.Mutex
	m  map[string]*localLock
}

type localLock struct {
	ch   chan struct{}
	refs int
}

func newLocalLocks() *localLocks { return &localLocks{m: map[string]*localLock{}} }

func (l *localLocks) lock(ctx context.Context, name string) (func(), error) {
	l.mu.Lock()
	k := l.m[name]
	if k == nil {
		k = &localLock{ch: make(chan struct{}, 1)}
		l.m[name] = k
	}
	k.refs++
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		if k.refs--; k.refs == 0 {
			delete(l.m, name)
		}
		l.mu.Unlock()
	}
	select {
	case k.ch <- struct{}{}:
		return func() { <-k.ch; done() }, nil
	case <-ctx.Done():
		done()
		return nil, errLockWait
	}
}

func (l *localLocks) lockAll(ctx context.Context, _ string, names []string) (func(), error) {
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)
	var held []func()
	release := func() {
		for _, f := range held {
			f()
		}
	}
	for _, n := range names { // in order: no two callers wait on each other
		f, err := l.lock(ctx, n)
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, f)
	}
	return release, nil
}

var errLockWait = &Error{Code: CodeBackendUnavailable, Message: "another write of this file is in progress, try again", Err: errors.New("file lock: gave up waiting")}

// redisLocks are shared by every replica: SET NX PX with a random token,
// renewed while held, released by a script that deletes only its own
// token. A replica that dies holding one frees it after redisLockTTL.
type redisLocks struct {
	rdb    redis.UniversalClient
	prefix string
}

const redisLockTTL = 30 * time.Second

func newRedisLocks(cfg Config) *redisLocks {
	return &redisLocks{rdb: cfg.Redis, prefix: cfg.RedisKeyPrefix}
}

// lockScript sets every key of KEYS to ARGV[1] with a TTL of ARGV[2] ms
// when none is set, and answers 1; else it sets none and answers 0.
var lockScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then return 0 end
end
for _, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1], 'PX', ARGV[2]) end
return 1`)

// unlockScript deletes the keys of KEYS that hold ARGV[1]; renewScript
// gives them a TTL of ARGV[2] ms again.
var unlockScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
return 1`)

var renewScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('PEXPIRE', k, ARGV[2]) end
end
return 1`)

func (r *redisLocks) lock(ctx context.Context, name string) (func(), error) {
	return r.lockAll(ctx, name, []string{name})
}

// lockAll takes the locks in one script (one round trip): the keys carry
// the group's hash tag. While any is held by another, it waits and tries
// again, up to 100 ms apart.
func (r *redisLocks) lockAll(ctx context.Context, group string, names []string) (func(), error) {
	g := sha256.Sum256([]byte(group))
	tag := r.prefix + "lock:{" + hex.EncodeToString(g[:8]) + "}"
	keys := make([]string, 0, len(names))
	for _, n := range names {
		sum := sha256.Sum256([]byte(n))
		keys = append(keys, tag+hex.EncodeToString(sum[:12]))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	var t [16]byte
	_, _ = rand.Read(t[:])
	token := hex.EncodeToString(t[:])
	wait := 2 * time.Millisecond
	for {
		ok, err := lockScript.Run(ctx, r.rdb, keys, token, redisLockTTL.Milliseconds()).Int()
		if err != nil {
			if ctx.Err() != nil {
				return nil, errLockWait
			}
			return nil, kvBackendError("lock", err)
		}
		if ok == 1 {
			break
		}
		select {
		case <-time.After(wait + time.Duration(mrand.Int64N(int64(wait)))):
			wait = min(2*wait, 100*time.Millisecond)
		case <-ctx.Done():
			return nil, errLockWait
		}
	}
	stop := make(chan struct{})
	go func() { // renew while held: an upload may take longer than the TTL
		tk := time.NewTicker(redisLockTTL / 3)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				c, cancel := context.WithTimeout(context.Background(), redisLockTTL/3)
				_ = renewScript.Run(c, r.rdb, keys, token, redisLockTTL.Milliseconds()).Err()
				cancel()
			}
		}
	}()
	return func() {
		close(stop)
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = unlockScript.Run(c, r.rdb, keys, token).Err()
		cancel()
	}, nil
}

// lockFile takes the usage lock of the file at key, waiting at most
// S3Timeout for another write of it to end (then 503).
func (e *Engine) lockFile(c *call, key string) (func(), error) {
	ctx, cancel := context.WithTimeout(c.ctx, e.cfg.S3Timeout)
	defer cancel()
	return e.locks.lock(ctx, "file\x00"+key)
}

// oldFile is the file at key before a write: its size, or none.
func (e *Engine) oldFile(ctx context.Context, key string) (oldValue, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.S3Timeout)
	defer cancel()
	st, err := e.cfg.S3.StatObject(ctx, e.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if err := s3Error("stat", err); errors.Is(err, ErrNotFound) {
			return oldValue{}, nil
		} else {
			return oldValue{}, err
		}
	}
	return oldValue{size: st.Size, existed: true}, nil
}
