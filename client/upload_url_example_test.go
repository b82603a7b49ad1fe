package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cpod/storage/client"
)

// ExampleFiles_UploadURL signs an upload URL on the server side and uploads
// through it the way a browser would: a plain PUT with the signed
// Content-Type and no Authorization header.
func ExampleFiles_UploadURL() {
	c, done := exampleClient()
	defer done()
	ctx := context.Background()
	files := c.Storage.Files

	// Server side: a URL that stores one PNG of at most 5 MiB at
	// uploads/avatar.png in the user's tier, for the next 10 minutes.
	up, err := files.UploadURL(ctx, "uploads/avatar.png", &client.UploadURLOptions{
		ExpiresIn:   10 * time.Minute,
		ContentType: "image/png",
		MaxSize:     5 << 20,
		Tier:        client.TierUser,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(up.Method)

	// Browser side (here net/http): PUT the bytes, no token.
	req, err := http.NewRequest(up.Method, up.URL, strings.NewReader("\x89PNG..."))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "image/png")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)

	// Another Content-Type than the signed one is refused.
	req, _ = http.NewRequest(http.MethodPut, up.URL, strings.NewReader("<html>"))
	req.Header.Set("Content-Type", "text/html")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	fmt.Println(errors.Is(client.CheckResponse(resp), client.ErrInvalidSignature))
	resp.Body.Close()

	// The app reads the uploaded file with its token.
	obj, err := files.Read(ctx, "uploads/avatar.png", &client.ReadOptions{Tier: client.TierUser})
	if err != nil {
		panic(err)
	}
	obj.Close()
	fmt.Println(obj.ContentType, obj.Size)

	// Output:
	// PUT
	// 200
	// true
	// image/png 7
}
