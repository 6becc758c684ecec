// Records/s through ChangeStreamProcessor (batching + coalescing + envelope serialization),
// against a baseline that pushes the same records into a std::vector and dumps them once.
#include <wsgate/stream/change_stream.hpp>

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

namespace {

constexpr std::size_t records_per_run = 10'000;

// `distinct` items of one entity type; a realistic metrics image of a handful of fields.
std::vector<wsgate::ChangeRecord> make_records(std::size_t distinct) {
    std::vector<wsgate::ChangeRecord> out;
    out.reserve(records_per_run);
    for (std::size_t i = 0; i < records_per_run; ++i) {
        const auto id = "stream-" + std::to_string(i % distinct);
        wsgate::ChangeRecord r;
        r.event_type = i < distinct ? wsgate::ChangeEventType::insert : wsgate::ChangeEventType::modify;
        r.entity_type = "stream";
        r.keys = {{"entity_id", id}};
        r.new_image = {{"entity_id", id},
                       {"entity_type", "stream"},
                       {"metric_value", static_cast<std::int64_t>(i)},
                       {"unit", "ops"},
                       {"timestamp", "2024-11-04T12:34:56Z"}};
        r.sequence_number = std::to_string(1'000'000 + i);
        r.timestamp = wsgate::from_unix_ms(1'699'123'456'789 + static_cast<std::int64_t>(i));
        out.push_back(std::move(r));
    }
    return out;
}

nlohmann::json update_json(const wsgate::ChangeRecord& r) {
    return {{"eventType", wsgate::to_string(r.event_type)},
            {"timestamp", wsgate::to_unix_ms(r.timestamp)},
            {"data", r.new_image}};
}

// Baseline: copy every record into a vector, then build one update array and dump it once.
void BM_Baseline_VectorAndOneDump(benchmark::State& state) {
    const auto records = make_records(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        std::vector<wsgate::ChangeRecord> batch;
        for (const auto& r : records) batch.push_back(r);
        nlohmann::json updates = nlohmann::json::array();
        for (const auto& r : batch) updates.push_back(update_json(r));
        auto text = nlohmann::json{{"type", "METRICS_UPDATE"}, {"updates", std::move(updates)}}.dump();
        benchmark::DoNotOptimize(text);
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(records_per_run));
}

void run_processor(benchmark::State& state, wsgate::ChangeStreamSettings settings) {
    const auto records = make_records(static_cast<std::size_t>(state.range(0)));
    auto clock = std::make_shared<wsgate::ManualClock>();
    std::size_t bytes = 0;
    std::size_t envelopes = 0;
    // The sink serializes each envelope, as Gateway::publish does once per publish.
    wsgate::ChangeStreamProcessor p{clock,
                                    [&](const wsgate::Envelope& e, const wsgate::Audience&) {
                                        bytes += e.serialize(clock->now())->size();
                                        ++envelopes;
                                    },
                                    std::move(settings)};
    for (auto _ : state) {
        for (const auto& r : records) p.push(r);
        p.flush();
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(records_per_run));
    state.counters["envelopes/run"] = static_cast<double>(envelopes) / static_cast<double>(state.iterations());
    state.counters["bytes/run"] = static_cast<double>(bytes) / static_cast<double>(state.iterations());
}

// The seed's shape: every update to everyone, batches of 100, coalescing on.
void BM_Processor_Everyone_Coalesce(benchmark::State& state) {
    wsgate::ChangeStreamSettings s;
    s.publish_to_everyone = true;
    s.publish_to_type_topic = false;
    s.publish_to_entity_topic = false;
    run_processor(state, s);
}

void BM_Processor_Everyone_NoCoalesce(benchmark::State& state) {
    wsgate::ChangeStreamSettings s;
    s.coalesce = false;
    s.publish_to_everyone = true;
    s.publish_to_type_topic = false;
    s.publish_to_entity_topic = false;
    run_processor(state, s);
}

// The default: per-type and per-entity topics (selective subscriptions).
void BM_Processor_Topics_Coalesce(benchmark::State& state) { run_processor(state, {}); }

}  // namespace

// Argument: distinct items among the 10,000 records (16 = hot keys, 10000 = no repeats).
BENCHMARK(BM_Baseline_VectorAndOneDump)->Arg(16)->Arg(10'000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Processor_Everyone_Coalesce)->Arg(16)->Arg(10'000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Processor_Everyone_NoCoalesce)->Arg(16)->Arg(10'000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Processor_Topics_Coalesce)->Arg(16)->Arg(10'000)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
