package badgertokens

// Syncs returns how many batches s made durable.
func Syncs(s *Store) int64 { return s.syncs.Load() }
