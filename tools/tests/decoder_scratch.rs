use tinyformer::format::writer::AlignedBuf;
use tinyformer::{Decoder, Logits, State};
use tinyformer_cli::convert::Precision;

fn argmax_f32(v: &[f32]) -> u32 {
    let mut b = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[b] {
            b = i;
        }
    }
    b as u32
}
fn argmax_i32(v: &[i32]) -> u32 {
    let mut b = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[b] {
            b = i;
        }
    }
    b as u32
}

#[test]
fn scratch_greedy() {
    let ckpt = tinyformer_cli::llama2c::read_llama2c(std::path::Path::new(
        "../models/stories260K/stories260K.bin",
    ))
    .unwrap();
    for prec in [Precision::F32] {
        let bytes = tinyformer_cli::decoder::convert(&ckpt, &[], prec, None, None, false).unwrap();
        let buf = AlignedBuf::from_bytes(&bytes);
        let model = Decoder::from_bytes(buf.as_bytes()).unwrap();
        let mut arena = vec![0u32; model.arena_bytes(256).unwrap() / 4 + 1];
        let mut state = State::new(&model, bytemuck::cast_slice_mut(&mut arena), 256).unwrap();
        let mut tok = 1u32;
        let mut ids = vec![];
        for _ in 0..200 {
            let next = match state.step(tok).unwrap() {
                Logits::F32(l) => argmax_f32(l),
                Logits::Q16(l) => argmax_i32(l),
            };
            ids.push(next);
            tok = next;
        }
        std::fs::write("/tmp/dec/ids.txt", format!("{:?}", ids)).unwrap();
        let mut cal = vec![1u32];
        cal.extend(&ids);
        let q = tinyformer_cli::decoder::convert(
            &ckpt,
            &[],
            Precision::Int8,
            None,
            Some(&[cal.clone()]),
            false,
        )
        .unwrap();
        let qbuf = AlignedBuf::from_bytes(&q);
        let qm = Decoder::from_bytes(qbuf.as_bytes()).unwrap();
        let mut qa = vec![0u32; qm.arena_bytes(256).unwrap() / 4 + 1];
        let mut qs = State::new(&qm, bytemuck::cast_slice_mut(&mut qa), 256).unwrap();
        let mut agree = 0;
        let mut nll_f = 0.0f64;
        let mut nll_q = 0.0f64;
        state.reset();
        for w in cal.windows(2) {
            let lf: Vec<f64> = match state.step(w[0]).unwrap() {
                Logits::F32(l) => l.iter().map(|&x| x as f64).collect(),
                _ => unreachable!(),
            };
            let lq: Vec<f64> = match qs.step(w[0]).unwrap() {
                Logits::Q16(l) => l.iter().map(|&x| x as f64 / 65536.0).collect(),
                _ => unreachable!(),
            };
            let am = |v: &[f64]| {
                let mut b = 0;
                for i in 0..v.len() {
                    if v[i] > v[b] {
                        b = i;
                    }
                }
                b
            };
            if am(&lf) == am(&lq) {
                agree += 1;
            }
            let nll = |v: &[f64], t: usize| {
                let m = v.iter().cloned().fold(f64::MIN, f64::max);
                let s: f64 = v.iter().map(|x| (x - m).exp()).sum();
                -(v[t] - m - s.ln())
            };
            nll_f += nll(&lf, w[1] as usize);
            nll_q += nll(&lq, w[1] as usize);
        }
        let n = (cal.len() - 1) as f64;
        println!(
            "agree {}/{} ppl f {:.4} q {:.4}",
            agree,
            cal.len() - 1,
            (nll_f / n).exp(),
            (nll_q / n).exp()
        );
    }
}
