package badgerutil

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLoggerLevel(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(slog.New(slog.NewTextHandler(&buf, nil)), slog.LevelWarn, "test")
	l.Infof("opened %s\n", "x")
	l.Debugf("noise")
	l.Warningf("truncating %d", 3)
	l.Errorf("bad")
	out := buf.String()
	if strings.Contains(out, "opened") || strings.Contains(out, "noise") || !strings.Contains(out, "truncating 3") || !strings.Contains(out, "bad") || !strings.Contains(out, "component=test") {
		t.Fatalf("log output:\n%s", out)
	}
}
