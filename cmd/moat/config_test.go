package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCheckServer(t *testing.T) {
	for _, s := range []string{"http://127.0.0.1:8440", "https://moat.example.com", "https://moat.example.com/prefix/"} {
		if err := checkServer(s); err != nil {
			t.Errorf("checkServer(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "127.0.0.1:8440", "ftp://x", "http://", "http://u:p@host", "http://host/?q=1", "http://host/#f", "http://[::1"} {
		if err := checkServer(s); err == nil {
			t.Errorf("checkServer(%q) succeeded", s)
		}
	}
}

func TestConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := readConfig(dir); err == nil {
		t.Fatal("readConfig of an empty directory succeeded")
	}
	want := &deviceConfig{Server: "http://127.0.0.1:8440"}
	if err := writeConfig(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := readConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if err := os.WriteFile(filepath.Join(dir, configFile), []byte(`{"server":"ftp://x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readConfig(dir); err == nil {
		t.Fatal("readConfig accepted a bad server URL")
	}
}
