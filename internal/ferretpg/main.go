// Command ferretpg runs FerretDB (MongoDB wire protocol) on a PostgreSQL
// backend, for the conformance run of .ci/services.sh against real servers.
//
// The upstream cmd/ferretdb, built from the module, panics at start because a
// generated version file is missing; this program embeds the ferretdb package
// instead.
//
//	ferretpg -listen 127.0.0.1:27017 -postgresql-url postgres://127.0.0.1:5432/ferretdb
//
// It logs to stderr at the -log-level (default warn) and runs until SIGTERM
// or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	pgURL := flag.String("postgresql-url", "", "PostgreSQL connection URL, e.g. postgres://127.0.0.1:5432/ferretdb")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn or error")
	flag.Parse()

	if *pgURL == "" {
		fmt.Fprintln(os.Stderr, "ferretpg: -postgresql-url is required")
		os.Exit(2)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretpg: bad -log-level: %v\n", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Logger:        logger,
		Handler:       "postgresql",
		PostgreSQLURL: *pgURL,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretpg: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if err := f.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "ferretpg: %v\n", err)
		os.Exit(1)
	}
}
