fn main() {
    eprintln!("miredo-checkconf: not implemented yet");
    std::process::exit(2);
}
