//! On-CPU time of the benchmark process, a steadier measure than wall-clock throughput on a
//! machine shared with other work: it counts only the cycles this process was given.

/// On-CPU time of every live thread of this process so far, in nanoseconds: the sum of the first
/// field of each thread's `/proc/self/task/*/schedstat`. 0 where that file does not exist.
pub fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
