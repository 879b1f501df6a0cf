# Threads that share a locked counter and a queue: the results are the same
# however they interleave (tools/realprogs.sh, with and without the shim).
use strict;
use warnings;
use threads;
use threads::shared;
use Thread::Queue;

my $total :shared = 0;
my $q = Thread::Queue->new();
my @workers = map {
    my $k = $_;
    threads->create(sub {
        for my $i (1 .. 20000) { lock($total); $total += ($i * $k) % 7; }
        $q->enqueue($k * $k);
        return $k;
    });
} 1 .. 8;
my $ids = 0;
$ids += $_->join() for @workers;
my $sq = 0;
$sq += $q->dequeue() for 1 .. 8;
print "total=$total ids=$ids squares=$sq\n";
