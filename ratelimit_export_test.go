package storage

// UseProcessRateLimits makes e keep its rate limits in process, as an
// engine without Redis does, so that the black-box rate-limit suite runs on
// both paths. Call it before e serves a request.
func UseProcessRateLimits(e *Engine) {
	if e.limiter != nil {
		e.limiter.store = newMemRates()
	}
}
