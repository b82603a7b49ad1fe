package client_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/cpod/storage/client"
)

// ExampleClient_Usage reads what this app stores in its private tier and
// what its user stores across apps: the bytes of the values (not of the
// names) and how many there are.
func ExampleClient_Usage() {
	c, done := exampleClient()
	defer done()
	ctx := context.Background()

	if _, err := c.Storage.Files.Write(ctx, "notes/today.txt", strings.NewReader("buy milk"), nil); err != nil {
		panic(err)
	}
	if err := c.Storage.KV.WithTier(client.TierUser).Set(ctx, "theme", "dark", nil); err != nil {
		panic(err)
	}

	u, err := c.Usage(ctx, client.TierPrivate)
	if err != nil {
		panic(err)
	}
	fmt.Printf("private: files %d B in %d, kv %d keys\n", u.Files.Bytes, u.Files.Count, u.KV.Count)
	u, err = c.Usage(ctx, client.TierUser)
	if err != nil {
		panic(err)
	}
	fmt.Printf("user: kv %d B in %d\n", u.KV.Bytes, u.KV.Count)

	// Output:
	// private: files 8 B in 1, kv 0 keys
	// user: kv 4 B in 1
}
