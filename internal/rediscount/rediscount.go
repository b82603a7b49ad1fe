// Package rediscount is a go-redis hook that counts the commands a client
// sends (a pipeline counts each of its commands). cpodtest counts the
// engine's Redis calls with it.
package rediscount

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Hook adds one to N for every command sent through the client.
type Hook struct{ N *atomic.Int64 }

var _ redis.Hook = Hook{}

func (h Hook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h Hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.N.Add(1)
		return next(ctx, cmd)
	}
}

func (h Hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.N.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}
