#include "pipeline/schedule_csv.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "pipeline/validator.h"

namespace minipipe::pipeline {

namespace {

char action_letter(Op op) {
  switch (op) {
    case Op::Forward: return 'F';
    case Op::Backward: return 'B';
    case Op::BackwardInput: return 'I';
    case Op::BackwardWeight: return 'W';
    default: return '?';
  }
}

// One cell read: a compute action of a global stage (piece), or idle.
struct Action {
  int piece = -1;
  Op op = Op::Forward;
  int micro_batch = -1;
  bool overlapped = false;  // the forward of an (F;B)OVERLAP_F_B cell
  bool idle() const { return piece < 0; }
};

std::string trimmed(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t\r");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t\r") - first + 1);
}

// `<digits><F|I|W|B><digits>`, or empty.
Action parse_action(const std::string& cell, const std::string& where) {
  const std::string text = trimmed(cell);
  Action action;
  if (text.empty()) return action;
  auto refuse = [&](const std::string& why) { throw ScheduleError(where + ": '" + text + "' " + why); };
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  const size_t type_at = i;
  while (i < text.size() && (std::isupper(static_cast<unsigned char>(text[i])) || text[i] == '_')) ++i;
  const std::string type = text.substr(type_at, i - type_at), micro_batch = text.substr(i);
  const bool digits = !micro_batch.empty() && std::all_of(micro_batch.begin(), micro_batch.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c));
  });
  if (type_at == 0 || type.empty() || !digits || type_at > 6 || micro_batch.size() > 6)
    refuse("is not an action; write <stage><F|I|W|B><micro-batch>, like 1F0");
  if (type == "SEND_F" || type == "RECV_F" || type == "SEND_B" || type == "RECV_B" || type == "UNSHARD" ||
      type == "RESHARD" || type == "REDUCE_GRAD")
    refuse("is a communication action: give a compute-only schedule (F, I, W, B), minipipe adds the messages");
  if (type.size() != 1 || std::string("FIWB").find(type[0]) == std::string::npos)
    refuse("has the unknown type " + type + " (F, I, W or B)");
  action.piece = std::stoi(text.substr(0, type_at));
  action.op = type == "F" ? Op::Forward : type == "B" ? Op::Backward : type == "I" ? Op::BackwardInput : Op::BackwardWeight;
  action.micro_batch = std::stoi(micro_batch);
  return action;
}

// A cell's actions: one, none (idle), or DualPipe's overlapped pair "(0F3;1B0)OVERLAP_F_B",
// a forward and a backward run as one step.
std::vector<Action> parse_cell(const std::string& cell, const std::string& where) {
  const std::string text = trimmed(cell);
  const std::string suffix = ")OVERLAP_F_B";
  if (text.size() < suffix.size() || text.compare(text.size() - suffix.size(), suffix.size(), suffix) != 0) {
    const Action action = parse_action(text, where);
    return action.idle() ? std::vector<Action>{} : std::vector<Action>{action};
  }
  const size_t semicolon = text.find(';');
  if (text[0] != '(' || semicolon == std::string::npos)
    throw ScheduleError(where + ": '" + text + "' is not an overlapped pair; write (<forward>;<backward>)OVERLAP_F_B, like "
                        "(0F3;1B0)OVERLAP_F_B");
  Action forward = parse_action(text.substr(1, semicolon - 1), where);
  const Action backward = parse_action(text.substr(semicolon + 1, text.size() - suffix.size() - semicolon - 1), where);
  if (forward.idle() || backward.idle() || forward.op != Op::Forward ||
      (backward.op != Op::Backward && backward.op != Op::BackwardInput))
    throw ScheduleError(where + ": '" + text + "' overlaps what is not a forward (F) and a backward (B or I)");
  forward.overlapped = true;
  return {forward, backward};
}

std::vector<std::vector<std::string>> csv_rows(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (trimmed(line).empty()) continue;
    std::vector<std::string> cells;
    std::istringstream in(line);
    std::string cell;
    while (std::getline(in, cell, ',')) cells.push_back(cell);
    if (!line.empty() && line.back() == ',') cells.emplace_back();
    rows.push_back(cells);
  }
  return rows;
}

// The placement that gives rank r exactly the pieces of `held`, if minipipe has one.
Placement placement_of(const std::vector<std::set<int>>& held, int stages, int chunks) {
  for (Placement placement : {Placement::Looped, Placement::V}) {
    Schedule probe;
    probe.stages = stages, probe.virtual_stages = chunks, probe.placement = placement;
    bool fits = true;
    for (int r = 0; r < stages && fits; ++r)
      for (int c = 0; c < chunks && fits; ++c) fits = held[r].count(probe.piece_of(r, c)) == 1;
    if (fits) return placement;
  }
  std::string rows;
  for (int r = 0; r < stages; ++r) {
    rows += (r ? "; rank " : "rank ") + std::to_string(r) + ":";
    for (int p : held[r]) rows += " " + std::to_string(p);
  }
  throw ScheduleError("the ranks hold stages " + rows + ": minipipe places them looped (rank r holds r, r + " +
                      std::to_string(stages) + ", ...) or in a V (r, " + std::to_string(2 * stages - 1) + " - r, ...)");
}

// Within one row, a backward after its forward and a W after its I.
void check_order(const std::vector<Action>& row, const std::vector<size_t>& columns, int rank) {
  std::map<std::pair<int, int>, size_t> forward_at, input_at;  // (piece, micro-batch) -> column
  for (size_t i = 0; i < row.size(); ++i) {
    const Action& a = row[i];
    const std::pair key{a.piece, a.micro_batch};
    const std::string where = "rank " + std::to_string(rank) + ", column " + std::to_string(columns[i] + 1) + ": " +
                              std::to_string(a.piece) + action_letter(a.op) + std::to_string(a.micro_batch);
    if (a.op == Op::Forward) forward_at[key] = i;
    if ((a.op == Op::Backward || a.op == Op::BackwardInput) && !forward_at.count(key))
      throw ScheduleError(where + " comes before the forward " + std::to_string(a.piece) + "F" + std::to_string(a.micro_batch) +
                          " on its rank (a backward needs its forward)");
    if (a.op == Op::BackwardInput) input_at[key] = i;
    if (a.op == Op::BackwardWeight && !input_at.count(key))
      throw ScheduleError(where + " comes before " + std::to_string(a.piece) + "I" + std::to_string(a.micro_batch) +
                          " (W uses what I leaves)");
  }
}

}  // namespace

std::string schedule_to_csv(const Schedule& schedule) {
  if (schedule.asynchronous() || schedule.replicated() || schedule.token_slices > 1)
    throw ScheduleError("schedule '" + schedule.name + "' " +
                        (schedule.asynchronous() ? "has weight versions"
                         : schedule.replicated() ? "replicates stages"
                                                 : "cuts sequences into token slices") +
                        ", which PyTorch's schedule files cannot say");
  std::string out;
  for (int w = 0; w < schedule.workers(); ++w) {
    std::string row;
    bool pairing = false;  // inside an overlapped pair, after its forward
    for (const Instruction& i : schedule.programs[w]) {
      if (!is_compute(i.op)) continue;
      const std::string action = std::to_string(schedule.piece_of(w, i.chunk)) + action_letter(i.op) + std::to_string(i.micro_batch);
      if (pairing) {
        row += ";" + action + ")OVERLAP_F_B";
        pairing = false;
        continue;
      }
      row += (row.empty() ? "" : ",") + std::string(i.overlapped ? "(" : "") + action;
      pairing = i.overlapped;
    }
    out += row + "\n";
  }
  return out;
}

Schedule schedule_from_csv(const std::string& text, const std::string& name) {
  const std::vector<std::vector<std::string>> rows = csv_rows(text);
  if (rows.empty()) throw ScheduleError("schedule '" + name + "' has no rows: give one row of actions per rank");
  const int stages = static_cast<int>(rows.size());
  std::vector<std::vector<Action>> actions(stages);
  std::vector<std::vector<size_t>> columns(stages);
  std::map<int, int> rank_of_piece;
  int pieces = 0, micro_batches = 0;
  for (int r = 0; r < stages; ++r)
    for (size_t c = 0; c < rows[r].size(); ++c)
      for (const Action& a : parse_cell(rows[r][c], "rank " + std::to_string(r) + ", column " + std::to_string(c + 1))) {
      const auto [it, added] = rank_of_piece.emplace(a.piece, r);
      if (!added && it->second != r)
        throw ScheduleError("rank " + std::to_string(r) + ", column " + std::to_string(c + 1) + ": stage " +
                            std::to_string(a.piece) + " is on rank " + std::to_string(it->second) +
                            " too; a stage belongs to one rank");
      actions[r].push_back(a), columns[r].push_back(c);
      pieces = std::max(pieces, a.piece + 1), micro_batches = std::max(micro_batches, a.micro_batch + 1);
      }
  if (pieces % stages != 0 || static_cast<int>(rank_of_piece.size()) != pieces)
    throw ScheduleError("schedule '" + name + "' runs " + std::to_string(rank_of_piece.size()) + " of stages 0.." +
                        std::to_string(pieces - 1) + " on " + std::to_string(stages) +
                        " ranks: every stage must appear, and every rank hold as many");
  std::vector<std::set<int>> held(stages);
  for (const auto& [piece, rank] : rank_of_piece) held[rank].insert(piece);
  Schedule schedule;
  schedule.name = name;
  schedule.stages = stages;
  schedule.micro_batches = micro_batches;
  schedule.virtual_stages = pieces / stages;
  schedule.placement = placement_of(held, stages, schedule.virtual_stages);
  schedule.programs.resize(stages);
  for (int r = 0; r < stages; ++r) {
    check_order(actions[r], columns[r], r);
    for (const Action& a : actions[r]) {
      Instruction instruction{a.op, a.micro_batch, -1, 0, schedule.chunk_of_piece(a.piece)};
      instruction.overlapped = a.overlapped;
      schedule.programs[r].push_back(instruction);
    }
  }
  add_communication(schedule);
  validate(schedule);
  return schedule;
}

Schedule read_schedule_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read the schedule file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > (64u << 20)) throw ScheduleError(path + " is larger than a schedule file can be (64 MiB)");
  try {
    return schedule_from_csv(text.str(), path);
  } catch (const ScheduleError& e) {
    throw ScheduleError(path + ": " + e.what());
  }
}

void write_schedule_file(const std::string& path, const Schedule& schedule) {
  const std::string text = schedule_to_csv(schedule);
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out.flush()) throw std::runtime_error("cannot write the schedule file " + path);
}

}  // namespace minipipe::pipeline
