package main

import (
	"context"
	"errors"
	"github.com/moat-im/moat/internal/atomicfile"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	srv := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: o.Timeouts.ReadHeader,
		ReadTimeout:       o.Timeouts.Read,
		WriteTimeout:      o.Timeouts.Write,
		IdleTimeout:       o.Timeouts.Idle,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	log.Info("serving", slog.String("addr", ln.Addr().String()), slog.String("name", d.cfg.Name),
		slog.Any("vkeys", d.vkeys()), slog.Any("origins", d.origins()))
	if o.AddrFile != "" {
		if err := atomicfile.WriteFile(o.AddrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			srv.Close()
			return err
		}
	}

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stop() // a second signal kills the process
	log.Info("shutting down", slog.Duration("timeout", o.Timeouts.Shutdown))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.Timeouts.Shutdown)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
