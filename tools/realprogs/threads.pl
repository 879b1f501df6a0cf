# Threads that share a locked counter and a queue: the results are the same
# however they interleave (tools/realprogs.sh, with and without the shim).
use strict;
use warnings;
use threads;
use threads::shared;
use Thread::Queue;

my $total :shared = 0;
if (($ARGV[0] // '') eq '--serve') {
    # The ends group: workers that run until the file $ARGV[1] exists, and
    # a main thread that prints a beat every 0.1 s meanwhile (its "answer").
    my $stop = $ARGV[1];
    $| = 1;
    my @w = map {
        my $k = $_;
        threads->create(sub {
            until (-e $stop) { { lock($total); $total += $k; } select(undef, undef, undef, 0.01); }
            return $k;
        });
    } 1 .. 4;
    until (-e $stop) { print "beat\n"; select(undef, undef, undef, 0.1); }
    $_->join() for @w;
    exit 0;
}
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
