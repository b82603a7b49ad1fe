package cpodtest

import (
	"context"
	"errors"
	"slices"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/client"
)

// Client returns a [client.Client] for the server that acts as the identity
// in c, so a test of an app that uses the Go SDK is three lines:
//
//	srv := cpodtest.NewServer(t)
//	c := srv.Client(cpodtest.Claims{Tenant: "t1", App: "notes", User: "alice",
//		Scopes: []string{"storage.user.read", "storage.user.write"}})
//	// hand c to the code under test
//
// When c.App is not registered yet, Client registers it declaring c.Scopes.
// An app that exists already (from an earlier Client call, [Server.RegisterApp]
// or POST /v1/oauth/apps) is left as it is: register an app with fewer scopes
// first to see [client.ErrInvalidScope].
//
// With c.TTL zero the client mints a fresh token for every request, so
// [Server.FastForward] never expires it. With a TTL set, one token is minted
// now and expires on the server's clock like any other (a negative TTL gives
// an expired token at once).
//
// opts are applied after the token, for example [client.WithHTTPClient].
// A failure to register the app fails the test.
func (s *Server) Client(c Claims, opts ...client.Option) *client.Client {
	s.t.Helper()
	c.Scopes = slices.Clone(c.Scopes)
	s.ensureApp(c.App, c.Scopes)
	tok := client.WithToken(s.Token(c))
	if c.TTL == 0 {
		tok = client.WithTokenSource(func(context.Context) (string, error) {
			return s.Token(c), nil
		})
	}
	cl, err := client.New(s.URL, append([]client.Option{tok}, opts...)...)
	if err != nil {
		s.t.Fatalf("cpodtest: client: %v", err)
	}
	return cl
}

// ensureApp registers clientID declaring scopes unless it exists.
func (s *Server) ensureApp(clientID string, scopes []string) {
	s.t.Helper()
	s.appsMu.Lock()
	defer s.appsMu.Unlock()
	if s.appsKnown[clientID] {
		return
	}
	ctx := context.Background()
	_, err := s.Engine.GetApp(ctx, clientID)
	if errors.Is(err, storage.ErrNotFound) {
		if scopes == nil {
			scopes = []string{}
		}
		_, err = s.Engine.RegisterApp(ctx, storage.App{
			ClientID:       clientID,
			Name:           clientID,
			DeclaredScopes: scopes,
			AppType:        "service",
		})
	}
	if err != nil {
		s.t.Fatalf("cpodtest: register app %q: %v", clientID, err)
	}
	s.appsKnown[clientID] = true
}
