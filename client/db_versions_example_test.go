package client_test

import (
	"context"
	"fmt"

	"github.com/cpod/storage/client"
)

// ExampleIfMatch is a safe read-modify-write: read the document and its
// ETag, change it, and write it back only if nobody wrote it meanwhile;
// otherwise read again and retry.
func ExampleIfMatch() {
	c, done := exampleClient()
	defer done()
	ctx := context.Background()
	stock := c.Storage.DB.Collection("stock", nil)
	if err := stock.Set(ctx, "widget", map[string]int{"count": 10}); err != nil {
		panic(err)
	}

	for {
		var item struct {
			Count int `json:"count"`
		}
		var etag string
		if _, err := stock.Get(ctx, "widget", &item, client.ETag(&etag)); err != nil {
			panic(err)
		}
		item.Count--
		err := stock.Set(ctx, "widget", item, client.IfMatch(etag))
		if client.PreconditionFailed(err) {
			continue // another writer won: read again
		}
		if err != nil {
			panic(err)
		}
		fmt.Println("count is now", item.Count)
		break
	}

	// IfAbsent creates only.
	err := stock.Set(ctx, "widget", map[string]int{"count": 0}, client.IfAbsent())
	fmt.Println(client.PreconditionFailed(err))

	// Output:
	// count is now 9
	// true
}

// ExampleCollection_Patch merges a JSON Merge Patch into a document: named
// members are set, a nil member is removed, the others are kept in their
// order.
func ExampleCollection_Patch() {
	c, done := exampleClient()
	defer done()
	ctx := context.Background()
	prefs := c.Storage.DB.Collection("preferences", nil)
	if err := prefs.Set(ctx, "theme", map[string]any{"mode": "dark", "accent": "purple", "fontSize": 14}); err != nil {
		panic(err)
	}

	var theme map[string]any
	var etag string
	err := prefs.Patch(ctx, "theme", map[string]any{"accent": "teal", "fontSize": nil}, &theme, client.ETag(&etag))
	if err != nil {
		panic(err)
	}
	fmt.Println(theme["mode"], theme["accent"], theme["fontSize"], etag != "")

	// Output:
	// dark teal <nil> true
}
