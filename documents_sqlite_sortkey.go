// cpod_sortkey: the SQL function that orders objects on the SQLite store
// as the contract (and MongoDB) orders them.

package storage

import (
	"bytes"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"modernc.org/sqlite"
)

func init() {
	sqlite.MustRegisterDeterministicScalarFunction("cpod_sortkey", 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		var text []byte
		switch x := args[0].(type) {
		case string:
			text = []byte(x)
		case []byte:
			text = x
		default:
			return nil, nil
		}
		return objectSortKey(text)
	})
}

// objectSortKey encodes the JSON text of an object of the query form (see
// queryForm: no arrays, canonical numbers), after the byte keyObject (see
// sortKeySQL), so that comparing two keys byte
// by byte orders the objects field by field, as query.go's order does: for
// each field its type bracket, then its name, then its value; an object
// that ends first sorts first. Every field is [bracket byte][name][value]
// and an object ends with 0x00, below every bracket byte (1 to 5):
//
//	null     nothing
//	number   the value as an exact, order-preserving 16 bytes (sortNumber)
//	string   its bytes, 0x00 escaped as 0x00 0xFF, ended by 0x00 0x00
//	object   its fields as above, ended by 0x00
//	boolean  0x00 or 0x01
//
// Names are encoded like strings.
func objectSortKey(text []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("cpod_sortkey: not a JSON object")
	}
	return appendObjectKey(append(make([]byte, 0, len(text)+16), keyObject), dec)
}

func appendObjectKey(b []byte, dec *json.Decoder) ([]byte, error) {
	for dec.More() {
		nt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		vt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		at := len(b)
		b = append(b, 0) // the bracket, set below
		b = appendStringKey(b, nt.(string))
		switch v := vt.(type) {
		case nil:
			b[at] = 1
		case json.Number:
			b[at] = 2
			if b, err = appendNumberKey(b, string(v)); err != nil {
				return nil, err
			}
		case string:
			b[at] = 3
			b = appendStringKey(b, v)
		case json.Delim:
			if v != '{' {
				return nil, fmt.Errorf("cpod_sortkey: unexpected %v", v)
			}
			b[at] = 4
			if b, err = appendObjectKey(b, dec); err != nil {
				return nil, err
			}
		case bool:
			b[at] = 5
			if v {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, err
	}
	return append(b, 0), nil
}

func appendStringKey(b []byte, s string) []byte {
	if !strings.Contains(s, "\x00") {
		b = append(b, s...)
	} else {
		for i := 0; i < len(s); i++ {
			b = append(b, s[i])
			if s[i] == 0 {
				b = append(b, 0xFF)
			}
		}
	}
	return append(b, 0, 0)
}

// appendNumberKey appends a number literal of the query form as 16 bytes
// that order numbers exactly, int64 and float64 alike: the float64 nearest
// to it (order-preserving bits), then what the exact value lies above or
// below that float (an int64 in the int64 range; 0 for a float).
func appendNumberKey(b []byte, lit string) ([]byte, error) {
	var f float64
	var rem int64
	if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
		f = float64(n)
		rem = int64(uint64(n) - floatAsUint(f))
	} else if f, err = strconv.ParseFloat(lit, 64); err != nil {
		return nil, err
	}
	if f == 0 {
		f = 0 // -0 sorts as 0
	}
	bits := math.Float64bits(f)
	if bits&(1<<63) != 0 {
		bits = ^bits
	} else {
		bits |= 1 << 63
	}
	for i := 7; i >= 0; i-- {
		b = append(b, byte(bits>>(8*i)))
	}
	u := uint64(rem) ^ 1<<63
	for i := 7; i >= 0; i-- {
		b = append(b, byte(u>>(8*i)))
	}
	return b, nil
}

// floatAsUint is the two's complement of the integral float f, which lies
// in [-2^63, 2^63] (float64 of an int64).
func floatAsUint(f float64) uint64 {
	if f >= 1<<63 {
		return 1 << 63
	}
	return uint64(int64(f))
}
