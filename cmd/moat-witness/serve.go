package main

import (
	"context"
	"github.com/moat-im/moat/internal/atomicfile"
	"github.com/moat-im/moat/internal/httpserve"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

type serveOptions struct {
	Dir       string
	Listen    string
	AddrFile  string
	LogFormat string
	LogLevel  slog.Level
	Timeouts  timeouts
}

func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the witness's HTTP server until ctx is done or the process
// gets SIGINT or SIGTERM, then shuts down gracefully: it stops accepting
// connections and waits up to o.Timeouts.Shutdown for in-flight requests.
func serve(ctx context.Context, o serveOptions, logw io.Writer) error {
	log := newLogger(logw, o.LogFormat, o.LogLevel)
	d, err := loadDir(o.Dir)
	if err != nil {
		return err
	}
	unlock, err := lockDir(filepath.Join(o.Dir, lockFile))
	if err != nil {
		return err
	}
	defer unlock()
	store, err := openFileStore(filepath.Join(o.Dir, stateDir))
	if err != nil {
		return err
	}
	w, err := d.witness(store)
	if err != nil {
		return err
	}
	s := newServer(w, d.origins(), log)
	s.healthy = func(context.Context) error {
		_, err := os.Stat(store.dir)
		return err
	}

	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return err
	}
	srv := httpserve.NewServer(s.handler(), httpserve.Options{
		Timeouts: httpserve.Timeouts{ReadHeader: o.Timeouts.ReadHeader, Read: o.Timeouts.Read,
			Write: o.Timeouts.Write, Idle: o.Timeouts.Idle, Shutdown: o.Timeouts.Shutdown},
		MaxHeaderBytes: 16 << 10,
		Logger:         log,
	})
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()
	errc := make(chan error, 1)
	go func() {
		errc <- httpserve.Serve(ctx, srv, ln, httpserve.ServeConfig{Shutdown: o.Timeouts.Shutdown, Logger: log})
	}()

	log.Info("serving", slog.String("addr", ln.Addr().String()), slog.String("name", d.cfg.Name),
		slog.Any("vkeys", d.vkeys()), slog.Any("origins", d.origins()))
	if o.AddrFile != "" {
		if err := atomicfile.WriteFile(o.AddrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			srv.Close()
			return err
		}
	}

	if err := <-errc; err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
