package main

import (
	"errors"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/spf13/cobra"
)

// errSDK marks a command whose client SDK call does not exist yet.
var errSDK = errors.New("not available yet: waiting on package client")

// device is this device's client, open on its unlocked local store.
type device struct{}

// open unlocks the local store in --data and opens the device's client.
func (g *globalOptions) open(cmd *cobra.Command) (*device, error) {
	if g.Data == "" {
		return nil, errNoData
	}
	sec, err := g.secret(false)
	if err != nil {
		return nil, err
	}
	defer sec.wipe()
	return nil, errSDK
}

func (d *device) Close() error { return nil }

func enrol(cmd *cobra.Command, g *globalOptions, o *enrolOptions, code *org.EnrolmentCode, sec *storeSecret) error {
	return errSDK
}

func whoami(cmd *cobra.Command, g *globalOptions) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	return errSDK
}

func contacts(cmd *cobra.Command, g *globalOptions) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	return errSDK
}

func send(cmd *cobra.Command, g *globalOptions, o *sendOptions, user, text string) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	return errSDK
}

func sendFile(cmd *cobra.Command, g *globalOptions, user, path, caption string) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	return errSDK
}

func getFile(cmd *cobra.Command, g *globalOptions, msg, out string) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	return errSDK
}

func watch(cmd *cobra.Command, g *globalOptions, follow bool, count int) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	return errSDK
}

func history(cmd *cobra.Command, g *globalOptions, user string, n int) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	return errSDK
}

func search(cmd *cobra.Command, g *globalOptions, q string) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	return errSDK
}

func verify(cmd *cobra.Command, g *globalOptions, user string) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	return errSDK
}

func timeline(cmd *cobra.Command, g *globalOptions, user string) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	return errSDK
}

func approve(cmd *cobra.Command, g *globalOptions, o *approveOptions) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	return errSDK
}
