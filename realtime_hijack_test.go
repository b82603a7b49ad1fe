package storage_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/cpod/storage/cpodtest"
)

// TestRealtimeCloseStreams: Engine.CloseStreams ends an open feed cleanly
// (the last chunk: the client reads io.EOF) and returns once it ended.
func TestRealtimeCloseStreams(t *testing.T) {
	t.Parallel()
	hubs(t, func(t *testing.T, opts ...cpodtest.Option) {
		srv := rtServer(t, opts...)
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
		s := follow(t, srv, "/v1/storage/kv/changes", tok, "")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Engine.CloseStreams(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.nextErr(); err != io.EOF {
			t.Fatalf("after CloseStreams: %v, want io.EOF", err)
		}
	})
}
