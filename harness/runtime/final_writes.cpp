#include "harness/runtime/final_writes.h"

#include <map>
#include <mutex>

namespace lb {

namespace {

struct Registry {
  std::mutex mutex;
  std::map<int, FinalWrite> writes;  // by id: registration order
  int next_id = 0;
};

Registry& registry() {
  // Never destroyed: a final write may run on a thread that outlives static destruction.
  static Registry* r = new Registry;
  return *r;
}

}  // namespace

int add_final_write(FinalWrite write) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.writes[r.next_id] = std::move(write);
  return r.next_id++;
}

void remove_final_write(int id) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.writes.erase(id);
}

void run_final_writes(const Ending& ending) {
  Registry& r = registry();
  // Held throughout: an owner unregistering meanwhile (a record going out of scope) waits until
  // its write is done rather than vanish under it.
  std::lock_guard<std::mutex> lock(r.mutex);
  for (auto& entry : r.writes) entry.second(ending);
  r.writes.clear();
}

void note_run_failure(const std::string& error) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (auto& entry : r.writes) entry.second({error, ""});
}

}  // namespace lb
