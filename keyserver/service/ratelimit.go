package service

import "github.com/moat-im/moat/internal/httpserve"

// Rate is a token-bucket rate limit: Burst requests at once, refilled at
// PerSecond. A zero Rate means no limit.
type Rate = httpserve.Rate
