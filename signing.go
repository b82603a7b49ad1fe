package storage

import (
	"crypto/hmac"
	"crypto/sha256"
)

// mac authenticates msg with a key derived from Config.SigningKey for one
// purpose ("signed-url", "files-cursor", "documents-cursor", ...), so a value
// signed for one purpose never verifies for another.
func (e *Engine) mac(purpose string, msg []byte) []byte {
	d := hmac.New(sha256.New, e.cfg.SigningKey)
	d.Write([]byte("cpod-storage/" + purpose))
	m := hmac.New(sha256.New, d.Sum(nil))
	m.Write(msg)
	return m.Sum(nil)
}

// validMAC reports in constant time whether sum is mac(purpose, msg).
func (e *Engine) validMAC(purpose string, msg, sum []byte) bool {
	return hmac.Equal(e.mac(purpose, msg), sum)
}
