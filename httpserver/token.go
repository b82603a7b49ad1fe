package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	storage "github.com/cpod/storage"
)

// maxTokenTTL caps the lifetime of a locally minted token.
const maxTokenTTL = 30 * 24 * time.Hour

// scopeList is a repeatable flag of comma- or space-separated scopes.
type scopeList []string

func (s *scopeList) String() string { return strings.Join(*s, ",") }
func (s *scopeList) Set(v string) error {
	for _, p := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		*s = append(*s, p)
	}
	return nil
}

// tokenCommand mints a bearer token signed with the data directory's token
// secret, for local use against a server that has no JWT setting. It prints
// the token alone on stdout.
func tokenCommand(args []string, env environ, stdout, stderr io.Writer) int {
	flags, fvs := newFlagSet("httpserver token", stderr, []string{"data-dir", "jwt-issuer", "jwt-audience", "jwt-claim-tenant", "jwt-claim-app", "jwt-claim-user", "jwt-claim-scope"})
	tenant := flags.String("tenant", "", "tenant id (required)")
	app := flags.String("app", "", "app id, the client_id of a registered app (required)")
	user := flags.String("user", "", "user id (default: none, a client-credentials token that cannot use the user tier)")
	ttl := flags.Duration("ttl", time.Hour, "lifetime of the token (at most 720h)")
	var scopes scopeList
	flags.Var(&scopes, "scope", "comma-separated scopes, repeatable: "+strings.Join(storage.Scopes, ","))
	flags.Usage = func() {
		fmt.Fprintf(stderr, "Usage: httpserver token --tenant T --app A [--user U] --scope S,... [--ttl 1h]\n\n"+
			"Prints a bearer token signed with <data-dir>/%s, accepted by a server that runs\n"+
			"without -jwt-* settings on the same data directory.\n\n", tokenSecretFile)
		flags.PrintDefaults()
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "cpod storage token: "+format+"\n", a...)
		return 2
	}
	if err := parseFlags(flags, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return fail("%v", err)
	}
	if flags.NArg() > 0 {
		return fail("unexpected argument %q", flags.Arg(0))
	}
	for _, f := range []string{"jwt-hmac-secret", "jwt-public-key-file", "jwt-jwks-url"} {
		if env.get(lookupSetting(f).env) != "" {
			return fail("%s is set: the server verifies tokens with it and would refuse tokens signed with the local secret; mint tokens with your issuer", lookupSetting(f).env)
		}
	}
	if unknown := env.unknownSettings(); len(unknown) > 0 {
		return fail("%s", strings.Join(unknown, "; "))
	}
	v := resolve(fvs, env.get)
	for name, id := range map[string]string{"--tenant": *tenant, "--app": *app} {
		if id == "" {
			return fail("%s is required", name)
		}
	}
	for name, id := range map[string]string{"--tenant": *tenant, "--app": *app, "--user": *user} {
		if id != "" && !storage.ValidID(id) {
			return fail("%s must be 1 to 128 printable ASCII characters without '/', '\\' or '%%', and not '.' or '..'", name)
		}
	}
	if len(scopes) == 0 {
		return fail("--scope is required, such as --scope storage.private.read,storage.private.write")
	}
	for _, s := range scopes {
		if !slices.Contains(storage.Scopes, s) {
			return fail("unknown scope %q; known scopes: %s", s, strings.Join(storage.Scopes, ","))
		}
	}
	if *ttl <= 0 || *ttl > maxTokenTTL {
		return fail("--ttl must be between 1s and %s", maxTokenTTL)
	}
	dir := v.v["data-dir"]
	secret, err := readSecret(dir, tokenSecretFile)
	if errors.Is(err, fs.ErrNotExist) {
		return fail("no token secret in %s: start the server once (go run ./httpserver) or pass --data-dir", dir)
	}
	if err != nil {
		return fail("%v", err)
	}
	names := storage.ClaimNames{Tenant: v.v["jwt-claim-tenant"], App: v.v["jwt-claim-app"], User: v.v["jwt-claim-user"], Scope: v.v["jwt-claim-scope"]}
	tok, err := signDevToken(secret, names, v.v["jwt-issuer"], v.v["jwt-audience"], *tenant, *app, *user, scopes, time.Now().Add(*ttl))
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// signDevToken signs a development token with the data directory's token
// secret (HS256), with the server's claim names, issuer and audience: the
// token command and the console's form (console.go) both mint with it.
func signDevToken(secret string, names storage.ClaimNames, iss, aud, tenant, app, user string, scopes []string, exp time.Time) (string, error) {
	claims := jwt.MapClaims{
		names.Tenant: tenant,
		names.App:    app,
		names.Scope:  strings.Join(scopes, " "),
		"iat":        time.Now().Unix(),
		"exp":        exp.Unix(),
	}
	if user != "" {
		claims[names.User] = user
	}
	if iss != "" {
		claims["iss"] = iss
	}
	if aud != "" {
		claims["aud"] = aud
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}
