// Package apikey issues and verifies agentbus API keys.
//
// A key looks like "ab-" + an 8-character id of [a-z0-9] + "_" + 43
// characters of base64url (32 random bytes): 55 characters in all. The id
// is public (it names the key in logs, limits and the CLI); the secret is
// shown once, at [Generate], and never stored: a [Record] keeps the user,
// the per-key limits (RPM, TPM) and the hex SHA-256 of the whole key.
//
//	plaintext, rec, err := apikey.Issue(ctx, store, "alice", 60, 0)
//	// give plaintext to alice; store holds only rec
//	v, _ := apikey.NewVerifier(store, apikey.VerifierConfig{})
//	rec, err = v.Verify(ctx, r.Header.Get("Authorization"))
//	switch {
//	case errors.Is(err, apikey.ErrUnavailable): // 503
//	case err != nil: // 401 with err.Error() as the message
//	}
//
// Why a plain SHA-256 and not bcrypt or argon2: those slow hashes protect
// low-entropy passwords from guessing. A key's secret is 256 random bits, so
// no guessing attack on the hash is feasible, and a fast hash keeps the
// check on every request cheap (about a microsecond).
//
// Guarantees:
//
//   - The secret is never stored, logged or put in an error: errors name the
//     reason (and a position for a bad character), [Record] logs without
//     its hash ([slog.LogValuer]), and [Redact] shows at most 8 characters.
//   - The hash comparison is constant-time ([Record.Matches]); an unknown
//     id and a wrong secret give the same [ErrUnknown].
//   - [Parse] names the exact reason a key is malformed (errors.Is-able
//     sentinels wrapping [ErrMalformed]).
//   - A record is never overwritten ([Store.Put] is create-only), so a key
//     id cannot be taken over.
//   - With a shared Store (the kvstore subpackage, on NATS KV), a new key
//     works at once on every replica and a revocation takes effect within
//     [VerifierConfig.CacheTTL], at most one second.
package apikey
