package service

import "time"

// SetEpochTicks makes Run publish an epoch on each value received from
// ticks instead of every EpochInterval, so that tests drive the cadence
// without timing. Call it before Run.
func (s *Service) SetEpochTicks(ticks <-chan time.Time) { s.epochTicks = ticks }
