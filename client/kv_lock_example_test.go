package client_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cpod/storage/client"
)

// ExampleKV_SetIfAbsent is the lock recipe: acquire with SetIfAbsent and a
// TTL (the lock frees itself if its holder dies), refresh with SetIfValue,
// release with DeleteIf. The value is a token only this holder knows, so
// that a holder whose lock expired can neither refresh nor release the
// lock someone else took since.
func ExampleKV_SetIfAbsent() {
	c, done := exampleClient()
	defer done()
	ctx := context.Background()
	kv := c.Storage.KV
	lock := &client.KVSetOptions{TTL: 30 * time.Second}

	token := rand.Text() // unique to this holder
	ok, err := kv.SetIfAbsent(ctx, "lock:report", token, lock)
	if err != nil {
		panic(err)
	}
	fmt.Println("acquired:", ok)

	// Another worker tries: the lock is taken.
	ok, err = kv.SetIfAbsent(ctx, "lock:report", rand.Text(), lock)
	if err != nil {
		panic(err)
	}
	fmt.Println("second taker acquired:", ok)

	// Long work: extend the lock, only while it is still ours.
	ok, err = kv.SetIfValue(ctx, "lock:report", token, token, lock)
	if err != nil {
		panic(err)
	}
	fmt.Println("refreshed:", ok)

	// Release: only our own lock.
	ok, err = kv.DeleteIf(ctx, "lock:report", "someone else's token")
	if err != nil {
		panic(err)
	}
	fmt.Println("released with a wrong token:", ok)
	ok, err = kv.DeleteIf(ctx, "lock:report", token)
	if err != nil {
		panic(err)
	}
	fmt.Println("released:", ok)

	// Output:
	// acquired: true
	// second taker acquired: false
	// refreshed: true
	// released with a wrong token: false
	// released: true
}

// ExampleKV_SetIfValue updates a value with compare-and-set: read it, compute
// the new value, write it only if nobody changed it in between, else retry.
func ExampleKV_SetIfValue() {
	c, done := exampleClient()
	defer done()
	ctx := context.Background()
	kv := c.Storage.KV

	if err := kv.Set(ctx, "balance", "100", nil); err != nil {
		panic(err)
	}
	for {
		cur, _, err := kv.Get(ctx, "balance")
		if err != nil {
			panic(err)
		}
		n, _ := strconv.Atoi(cur)
		ok, err := kv.SetIfValue(ctx, "balance", strconv.Itoa(n-30), cur, nil)
		if err != nil {
			panic(err)
		}
		if ok {
			break
		}
	}
	balance, _, _ := kv.Get(ctx, "balance")
	fmt.Println(balance)

	// Output:
	// 70
}

// ExampleKV_Expire sets and removes the TTL of an existing key, keeping
// its value.
func ExampleKV_Expire() {
	c, done := exampleClient()
	defer done()
	ctx := context.Background()
	kv := c.Storage.KV

	if err := kv.Set(ctx, "session:abc123", "data", nil); err != nil {
		panic(err)
	}
	if err := kv.Expire(ctx, "session:abc123", 15*time.Minute); err != nil {
		panic(err)
	}
	ttl, _ := kv.TTL(ctx, "session:abc123")
	fmt.Println(ttl)

	if err := kv.Expire(ctx, "session:abc123", client.NoExpiry); err != nil {
		panic(err)
	}
	ttl, _ = kv.TTL(ctx, "session:abc123")
	fmt.Println(ttl == client.NoExpiry)

	err := kv.Expire(ctx, "missing", time.Minute)
	fmt.Println(errors.Is(err, client.ErrNotFound))

	// Output:
	// 15m0s
	// true
	// true
}
