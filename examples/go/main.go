// Emit servicewatch events from Go, straight to Kafka, with franz-go.
//
//	cd examples/go && go run . -broker 127.0.0.1:9092
//
// What every Kafka emitter must do, in any language:
//   - one topic for all events (default servicewatch.events);
//   - the record KEY is the case id, so a case's events stay on one partition, in order;
//   - the record VALUE is one JSON object following schemas/json/<type>.schema.json;
//   - timestamps are ISO 8601 WITH a time zone; event_id is unique (re-use it when re-sending
//     the same event, so the worker drops the repeat);
//   - acks=all, idempotent producer (franz-go's defaults), so an acknowledged event is durable.
//
// Invalid events are not lost: the worker routes them to servicewatch.events.dlq with the reason.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Event holds the envelope every event has plus the fields of the four types; empty optional
// fields are left out of the JSON.
type Event struct {
	EventID    string `json:"event_id"`
	Type       string `json:"type"` // greeting, response, promise, delivery
	OccurredAt string `json:"occurred_at"`
	CaseID     string `json:"case_id"`
	Team       string `json:"team"`
	Channel    string `json:"channel"` // phone, email, chat, social, in_person, sms, web, video, other
	Source     string `json:"source,omitempty"`
	AgentID    string `json:"agent_id,omitempty"`
	Audience   string `json:"audience,omitempty"` // external (default) or internal

	ContactAt   string `json:"contact_at,omitempty"`   // greeting
	RequestedAt string `json:"requested_at,omitempty"` // response
	Priority    string `json:"priority,omitempty"`     // response (optional)
	PromiseID   string `json:"promise_id,omitempty"`   // promise, delivery
	DueAt       string `json:"due_at,omitempty"`       // promise
	Kind        string `json:"kind,omitempty"`         // promise: callback, delivery, resolution, refund, visit, other
}

func iso(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) } // always ends in Z

func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func main() {
	broker := flag.String("broker", envOr("SERVICEWATCH_BROKER", "127.0.0.1:9092"), "Kafka bootstrap host:port")
	topic := flag.String("topic", envOr("SERVICEWATCH_TOPIC", "servicewatch.events"), "events topic")
	team := flag.String("team", "example", "team label")
	flag.Parse()

	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(strings.TrimPrefix(*broker, "kafka://"), ",")...),
		kgo.DefaultProduceTopic(*topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // the default (with idempotence), spelled out
		kgo.ProduceRequestTimeout(10*time.Second),
		// franz-go compresses with snappy by default; uncompressed (or gzip) batches are read
		// by every servicewatch worker, see docs/emitting.md "Compression".
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka client:", err)
		os.Exit(1)
	}
	defer client.Close()

	now := time.Now()
	caseID := "case-" + newID()[:8]
	promiseID := caseID + "-visit"
	events := []Event{
		{Type: "greeting", ContactAt: iso(now.Add(-30 * time.Second))},
		{Type: "promise", PromiseID: promiseID, Kind: "visit", DueAt: iso(now.Add(4 * time.Hour))},
		{Type: "delivery", PromiseID: promiseID},
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, event := range events {
		event.EventID = newID()
		event.OccurredAt = iso(now)
		event.CaseID = caseID
		event.Team = *team
		event.Channel = "in_person"
		event.Source = "examples/go"
		value, err := json.Marshal(event)
		if err != nil {
			panic(err)
		}
		// ProduceSync waits for the broker's acknowledgement; use Produce with a callback
		// for throughput.
		record := &kgo.Record{Key: []byte(event.CaseID), Value: value}
		if err := client.ProduceSync(ctx, record).FirstErr(); err != nil {
			fmt.Fprintf(os.Stderr, "%s not written: %v\n", event.Type, err)
			os.Exit(1)
		}
		fmt.Printf("%-8s %s -> %s partition %d offset %d\n", event.Type, event.EventID, record.Topic, record.Partition, record.Offset)
	}
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
