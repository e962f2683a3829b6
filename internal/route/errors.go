package route

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
)

// Code is the answer to one kind of domain error: a request that failed
// with an error matching Err (errors.Is) is answered Status and Code, with
// the error's text as the message.
type Code struct {
	Err    error
	Status int
	Code   string
	// Trim leaves the sentinel's "<Err>: " prefix out of the message, for
	// errors made as fmt.Errorf("%w: what was wrong", Err).
	Trim bool
}

// Errors maps a package's domain errors to REST answers: the one table a
// package's handlers answer their failures with, in place of a switch of
// errors.Is cases per package.
type Errors struct {
	// Codes are tried in order; the first that matches answers.
	Codes []Code
	// Before, when set, sees every error first, for the answers that need
	// more than a status and a code (a field beside them, a header); it
	// reports whether it answered. It may set headers and return false.
	Before func(w http.ResponseWriter, err error) bool
	// Other answers an error no code matches; nil answers 500 "internal"
	// with the error's text.
	Other func(w http.ResponseWriter, err error)
}

// Write answers err.
func (e Errors) Write(w http.ResponseWriter, err error) {
	if e.Before != nil && e.Before(w, err) {
		return
	}
	for _, c := range e.Codes {
		if errors.Is(err, c.Err) {
			msg := err.Error()
			if c.Trim {
				msg = trimPrefix(msg, c.Err.Error()+": ")
			}
			Error(w, c.Status, c.Code, msg)
			return
		}
	}
	if e.Other != nil {
		e.Other(w, err)
		return
	}
	Error(w, http.StatusInternalServerError, "internal", err.Error())
}

// Reply is the tail of most handlers: v answered with status when err is
// nil, else err answered as Write does.
func (e Errors) Reply(w http.ResponseWriter, err error, status int, v any) {
	if err != nil {
		e.Write(w, err)
		return
	}
	JSON(w, status, v)
}

// Logged is an Errors.Other for failures whose text is for the operator,
// not the client (file paths, SQL): it logs the error as msg and answers
// 500 "internal" with answer.
func Logged(log *slog.Logger, msg, answer string) func(http.ResponseWriter, error) {
	return func(w http.ResponseWriter, err error) {
		log.Error(msg, "err", err)
		Error(w, http.StatusInternalServerError, "internal", answer)
	}
}

// trimPrefix is strings.TrimPrefix that keeps a message that is nothing
// but the prefix (an empty message says less than the sentinel's text).
func trimPrefix(msg, prefix string) string {
	if len(msg) > len(prefix) {
		return strings.TrimPrefix(msg, prefix)
	}
	return msg
}
